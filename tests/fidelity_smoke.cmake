# Runs the fidelity harness on the fixture dump and checks the CSV: a header plus one row
# for each of 4 scorers x 2 reducers x 2 modes x 2 chunkings = 32 rows. Then the budget
# policies (uniform, head_adaptive, pyramid) at the same mean budget. window@question
# scores by the fixture's pre-pass probes (the fixture has no per-layer queries, so a plain
# window scorer would be skipped).
execute_process(COMMAND ${FIDELITY} --dump ${DUMP} --label ${DUMP}=synthetic --budget-tokens 8
                        --chunks aligned:6,fixed:5 --scorers key_norm,key_diff,temporal,window@question --reducers evict,merge
                        --out ${OUT}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "fidelity exited with ${rc}")
endif()
file(STRINGS ${OUT} lines)
list(LENGTH lines count)
if(NOT count EQUAL 33)
  message(FATAL_ERROR "expected 33 CSV lines (header + 32 rows), got ${count}")
endif()
list(GET lines 1 first)
if(NOT first MATCHES "^kv_dump_small,synthetic,15,2,1,4,key_norm,evict,uniform,online,aligned,6,")
  message(FATAL_ERROR "unexpected first row: ${first}")
endif()

# Budget policies. The fixture has one kv-head, so head_adaptive must keep exactly what
# uniform keeps (the same share of the oracle's kept set) and cost the per-head layout's
# bookkeeping on top: L·(2H+1)·8 = 48 B of head lengths and offsets, a256(8·H) = 256 B of
# repack workspace and a256(8·(H+1)) = 256 B of head offsets (README's formula). The pyramid
# (shares 10 and 6 of 16 tokens) keeps other tokens.
execute_process(COMMAND ${FIDELITY} --dump ${DUMP} --label ${DUMP}=synthetic --budget-tokens 8 --chunks fixed:5
                        --scorers key_diff --budget-policies uniform,head_adaptive,pyramid --out ${OUT}.policies
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "fidelity --budget-policies exited with ${rc}")
endif()
file(STRINGS ${OUT}.policies lines)
list(LENGTH lines count)
if(NOT count EQUAL 7)
  message(FATAL_ERROR "expected 7 CSV lines (header + 3 policies x 2 modes), got ${count}")
endif()
foreach(line IN LISTS lines)
  string(REPLACE "," ";" fields "${line}")
  list(GET fields 8 policy)
  list(GET fields 9 mode)
  list(GET fields 17 peak)
  list(GET fields 19 overlap)
  set(${policy}_${mode}_peak ${peak})
  set(${policy}_${mode}_overlap ${overlap})
endforeach()
if(NOT head_adaptive_online_overlap STREQUAL uniform_online_overlap)
  message(FATAL_ERROR "one kv-head: head_adaptive kept ${head_adaptive_online_overlap} of the oracle's set, uniform ${uniform_online_overlap}")
endif()
math(EXPR expected_peak "${uniform_online_peak} + 48 + 256 + 256")
if(NOT head_adaptive_online_peak EQUAL expected_peak)
  message(FATAL_ERROR "head_adaptive peak ${head_adaptive_online_peak} B, expected ${expected_peak} B")
endif()
if(pyramid_online_overlap STREQUAL uniform_online_overlap)
  message(FATAL_ERROR "the pyramid kept the same share of the oracle's set as uniform (${uniform_online_overlap})")
endif()
