# End-to-end test of weight-only quantization through the wanrt program on a demo checkpoint:
# `wanrt quantize` writes a quantized checkpoint, `inspect` and `generate` accept it, and
# `generate --quantize` runs with load-time quantization; every bad input fails with status 1
# and a message naming the flag at fault. Run by CTest as
#   cmake -DWANRT=<wanrt binary> -DWORK=<scratch folder> -P tests/quantize_cli.cmake
include("${CMAKE_CURRENT_LIST_DIR}/cli_support.cmake")
set(demo "${WORK}/demo")

run_wanrt(0 make-demo-checkpoint "${demo}")
set(image "${demo}/example.png")
set(small --image "${image}" --prompt "a sunny field" --size 64*64 --frame_num 5
          --sample_steps 2 --base_seed 7)

# ---- wanrt quantize ----
run_wanrt(0 quantize --help)
expect_match("${out}" "--quantize" "quantize --help")
run_wanrt(0 quantize --ckpt_dir "${demo}" --quantize int8 --out "${WORK}/q8")
expect_match("${out}" "high_noise_model: 20 weights .* as int8 codes" "quantize summary")
expect_match("${out}" "low_noise_model: 20 weights" "quantize summary")
run_wanrt(0 inspect "${WORK}/q8")
expect_match("${out}" "high_noise_model: OK" "inspect of a quantized checkpoint")
expect_match("${out}" "quantized +20 weights stored as I8 codes" "inspect names the quantization")
expect_match("${out}" "DiT blocks" "inspect states the memory rule")

run_wanrt(1 quantize --ckpt_dir "${demo}" --quantize int8 --out "${WORK}/q8")
expect_match("${err}" "--out .*q8: exists and is not an empty folder" "quantize into a used folder")
run_wanrt(1 quantize --ckpt_dir "${demo}" --quantize False --out "${WORK}/none")
expect_match("${err}" "--quantize False: nothing to do" "quantize --quantize False")
run_wanrt(1 quantize --ckpt_dir "${demo}" --quantize int4 --out "${WORK}/q4")
expect_match("${err}" "--quantize 'int4': unknown quantization; choose False, True \\(= int8\\), int8 or fp8" "quantize --quantize int4")
run_wanrt(1 quantize --ckpt_dir "${WORK}/q8" --quantize fp8 --out "${WORK}/again")
expect_match("${err}" "already .*quantize the float checkpoint" "quantizing a quantized checkpoint")
if(EXISTS "${WORK}/again")
  message(FATAL_ERROR "a failed quantize left ${WORK}/again behind")
endif()

# ---- wanrt generate on it, and with --quantize ----
run_wanrt(0 generate --ckpt_dir "${WORK}/q8" ${small} --save_file "${WORK}/q8.mp4")
expect_match("${out}" "holds int8-quantized experts" "generate on a quantized checkpoint")
run_wanrt(0 generate --ckpt_dir "${demo}" ${small} --quantize fp8 --save_file "${WORK}/fp8.mp4")
expect_match("${out}" "weights +fp8 quantization of the experts' block linear layers \\(weights per output channel; on CUDA the activations too" "generate --quantize fp8")
run_wanrt(0 generate --ckpt_dir "${demo}" ${small} --quantize True --save_file "${WORK}/true.mp4")
expect_match("${out}" "weights +int8 weight-only" "generate --quantize True")
run_wanrt(1 generate --ckpt_dir "${demo}" ${small} --quantize int4 --save_file "${WORK}/bad.mp4")
expect_match("${err}" "--quantize 'int4': unknown quantization" "generate --quantize int4")
run_wanrt(1 generate --ckpt_dir "${WORK}/q8" ${small} --quantize fp8 --save_file "${WORK}/bad.mp4")
expect_match("${err}" "holds int8 weights; quantizing them to fp8" "generate --quantize fp8 on int8 weights")
message(STATUS "quantize_cli: all checks passed")
