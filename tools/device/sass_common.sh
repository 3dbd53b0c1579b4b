# tools/device/sass_common.sh — what the scripts that read the kernels' machine code share
# (sass_loads.sh, sass_ordering.sh): sourced, not run.
#
#   sass_fetch_tools WORK SCRIPT        cuobjdump and nvdisasm from PyPI into WORK/tools, on
#                                       PATH; exits 77 (a ctest skip) when they cannot be fetched
#   sass_compile WORK NAME INCLUDE SPEC compiles the kernel specialisation SPEC (half precision,
#                                       NHD: L and S name the layout and the structure) for
#                                       sm_90 with the library's device flags, against INCLUDE;
#                                       writes WORK/NAME.ptxas (ptxas -v) and WORK/NAME.sass;
#                                       fails when it does not compile
#
# cuobjdump (and the nvdisasm it runs) are not part of the CUDA packages here; they come from
# PyPI's nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm wheels, unpacked into the scratch
# folder (nothing is installed).

sass_fetch_tools() {
  local work=$1 script=$2
  if ! pip download --quiet --no-deps -d "$work/wheel" nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm; then
    echo "$script: could not fetch cuobjdump and nvdisasm from PyPI: skipped"
    exit 77
  fi
  local wheel
  for wheel in "$work"/wheel/*.whl; do unzip -q -o "$wheel" -d "$work/tools"; done
  local cuobjdump
  cuobjdump=$(find "$work/tools" -type f -name cuobjdump | head -n 1)
  chmod +x "$cuobjdump" "$(dirname "$cuobjdump")/nvdisasm"
  export PATH="$(dirname "$cuobjdump"):$PATH"
}

# The specialisation's address is taken, which instantiates it whatever its parameters are.
sass_compile() {
  local work=$1 name=$2 include=$3 spec=$4
  cat >"$work/$name.cu" <<SOURCE
#include <cuda_fp16.h>
#include <kvcap/device.cuh>
#include <kvcap/scorers.hpp>
#include <kvcap/reducers/merge.hpp>
using L = kvcap::layouts::nhd;
using S = kvcap::structures::sequence;
namespace kvcap::device::detail {
void* address_of_kernel() { return reinterpret_cast<void*>(&$spec); }
}
SOURCE
  nvcc -std=c++20 -arch=sm_90 -O3 --fmad=false --expt-relaxed-constexpr -diag-suppress=554 -I "$include" \
    -Xptxas -v -c "$work/$name.cu" -o "$work/$name.o" >"$work/$name.ptxas" 2>&1 || return 1
  cuobjdump -sass "$work/$name.o" >"$work/$name.sass"
}

# nvcc's version, as "V13.0.88".
sass_nvcc_version() { nvcc --version | sed -n 's/.*\(V[0-9][0-9.]*\).*/\1/p' | tail -n 1; }
