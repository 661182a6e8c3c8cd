# End-to-end test of the wanrt program: write a demo checkpoint, inspect it, and check that a
# missing folder is refused with a message naming it. Run by CTest as
#   cmake -DWANRT=<wanrt binary> -DWORK=<scratch folder> -P tests/cli_demo.cmake
include("${CMAKE_CURRENT_LIST_DIR}/cli_support.cmake")
set(demo "${WORK}/demo")

# --help and --version succeed and say what they should.
run_wanrt(0 --help)
expect_match("${out}" "inspect" "wanrt --help")
expect_match("${out}" "make-demo-checkpoint" "wanrt --help")
run_wanrt(0 --version)
expect_match("${out}" "^wanrt [0-9]" "wanrt --version")

# An unknown command or flag is an error in wanrt's format, not a crash.
run_wanrt(1 frobnicate)
expect_match("${err}" "^wanrt: error: " "unknown command")
run_wanrt(1 inspect --no-such-flag "${demo}")
expect_match("${err}" "^wanrt: error: " "unknown flag")

# Write, then inspect, the demo checkpoint.
run_wanrt(0 make-demo-checkpoint "${demo}" --seed 3)
expect_match("${out}" "RANDOM" "make-demo-checkpoint output")
run_wanrt(0 inspect "${demo}")
expect_match("${out}" "high_noise_model: OK" "inspect output")
expect_match("${out}" "low_noise_model: OK" "inspect output")
expect_match("${out}" "RANDOM" "inspect output (random weights)")
expect_match("${out}" "bf16" "inspect output (memory table)")
run_wanrt(0 inspect --json "${demo}")
expect_match("${out}" "\"random_demo\": true" "inspect --json")
expect_match("${out}" "\"ok\": true" "inspect --json")

# A non-empty folder is only replaced with --force.
run_wanrt(1 make-demo-checkpoint "${demo}")
expect_match("${err}" "wanrt: error: .*--force" "make-demo-checkpoint into a non-empty folder")
file(WRITE "${demo}/stale.txt" "left over")
run_wanrt(0 make-demo-checkpoint "${demo}" --force)
if(EXISTS "${demo}/stale.txt")
  message(FATAL_ERROR "--force left an old file in ${demo}")
endif()

# --force never empties a folder that is not a demo checkpoint.
file(WRITE "${WORK}/precious/weights.bin" "not a demo")
run_wanrt(1 make-demo-checkpoint "${WORK}/precious" --force)
expect_match("${err}" "wanrt: error: .*not one" "--force on a folder that is not a demo")
if(NOT EXISTS "${WORK}/precious/weights.bin")
  message(FATAL_ERROR "--force deleted a file of a folder that is not a demo checkpoint")
endif()

# An incomplete checkpoint: inspect reports what is missing, with the path, and fails.
file(REMOVE_RECURSE "${demo}/low_noise_model")
run_wanrt(1 inspect "${demo}")
expect_match("${out}" "Missing:" "inspect of an incomplete checkpoint")
regex_escape(low_noise_path "${demo}/low_noise_model")
expect_match("${out}" "${low_noise_path}" "inspect of an incomplete checkpoint")

# A folder that does not exist.
run_wanrt(1 inspect "${WORK}/does-not-exist")
regex_escape(missing_path "${WORK}/does-not-exist")
expect_match("${err}" "^wanrt: error: .*${missing_path}" "inspect of a missing folder")
message(STATUS "cli_demo: all checks passed")
