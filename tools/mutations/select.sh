# tools/mutations/select.sh — sourced by the mutation scripts (tools/device/simt_mutations.sh,
# tools/host/host_mutations.sh): KVCAP_MUTATIONS=PATTERN keeps only the mutations whose name
# (the text before the first '|') matches it (grep -E); unset, all of them.
#   select_mutations "${mutations[@]}"   # sets the array `selected`
select_mutations() {
  selected=()
  local m
  for m in "$@"; do
    if [ -z "${KVCAP_MUTATIONS:-}" ] || printf '%s' "${m%%|*}" | grep -qE "$KVCAP_MUTATIONS"; then selected+=("$m"); fi
  done
}
