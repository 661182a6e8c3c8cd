# Shared by the CTest scripts that drive the wanrt program (cli_demo, generate_cli,
# quantize_cli): argument check, a fresh scratch folder, and the run/match helpers.
# The including script is run as
#   cmake -DWANRT=<wanrt binary> -DWORK=<scratch folder> -P tests/<script>.cmake
if(NOT WANRT OR NOT WORK)
  message(FATAL_ERROR "usage: cmake -DWANRT=<wanrt> -DWORK=<dir> -P ${CMAKE_CURRENT_LIST_FILE}")
endif()
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

# Runs wanrt (in WORK) and requires its exit status; leaves stdout/stderr in `out` / `err`.
function(run_wanrt expected_status)
  execute_process(COMMAND "${WANRT}" ${ARGN} WORKING_DIRECTORY "${WORK}"
                  RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT status EQUAL expected_status)
    message(FATAL_ERROR "wanrt ${ARGN}: exit status ${status}, expected ${expected_status}\n"
                        "stdout:\n${out}\nstderr:\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
  set(err "${err}" PARENT_SCOPE)
endfunction()

# A path as a regular expression matching itself (build folders may hold '+' or '.').
function(regex_escape out text)
  string(REGEX REPLACE "([][+.*()^$?|\\])" "\\\\\\1" escaped "${text}")
  set(${out} "${escaped}" PARENT_SCOPE)
endfunction()

function(expect_match text regex what)
  if(NOT text MATCHES "${regex}")
    message(FATAL_ERROR "${what}: no match for '${regex}' in:\n${text}")
  endif()
endfunction()
