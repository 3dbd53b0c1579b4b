# Runs the fidelity harness on the fixture dump and checks the CSV: a header plus one row
# for each of 4 scorers x 2 reducers x 2 modes x 2 chunkings = 32 rows. window@question
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
if(NOT first MATCHES "^kv_dump_small,synthetic,15,2,1,4,key_norm,evict,online,aligned,6,")
  message(FATAL_ERROR "unexpected first row: ${first}")
endif()
