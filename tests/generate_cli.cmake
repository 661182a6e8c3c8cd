# End-to-end test of `wanrt generate` on a demo checkpoint: one small run that must succeed
# and write its files, then every kind of bad input, each of which must fail with status 1 and
# a message naming the flag or file at fault. Run by CTest as
#   cmake -DWANRT=<wanrt binary> -DWORK=<scratch folder> -P tests/generate_cli.cmake
include("${CMAKE_CURRENT_LIST_DIR}/cli_support.cmake")
set(demo "${WORK}/demo")
file(MAKE_DIRECTORY "${WORK}/out")

# ---- the demo checkpoint and its example image ----
run_wanrt(0 make-demo-checkpoint "${demo}")
set(image "${demo}/example.png")
if(NOT EXISTS "${image}")
  message(FATAL_ERROR "make-demo-checkpoint wrote no example image ${image}:\n${out}")
endif()

# The flags of a small valid run; each bad case below changes one thing. The CPU backend is
# named so the notes and numbers checked below do not depend on the machine having a GPU.
set(good --ckpt_dir "${demo}" --image "${image}" --prompt "a sunny field" --size 64*64
         --frame_num 5 --sample_steps 3 --base_seed 7 --backend cpu)

# ---- help ----
run_wanrt(0 generate --help)
foreach(flag --task --size --frame_num --ckpt_dir --image --prompt --n_prompt --sample_solver
             --sample_steps --sample_shift --sample_guide_scale --base_seed --save_file
             --offload_model --t5_cpu --convert_model_dtype --noise_file --save_latent --tf32
             --use_magcache --magcache_K --magcache_thresh --retention_ratio --magcache_ratios
             --magcache_calibrate --backend --compile --compile_mode --vae_dtype --attention --ulysses_size
             --dit_fsdp --t5_fsdp --quantize)
  expect_match("${out}" "${flag}" "generate --help lists ${flag}")
endforeach()
expect_match("${out}" "changes nothing on the CPU backend" "generate --help on --t5_cpu")
expect_match("${out}" "fastest path" "generate --help says what --compile means")
expect_match("${out}" "E012K2R20" "generate --help names the seed's MagCache setting")
# What is not available yet is listed apart; the recipes that now work are not in that list.
string(REGEX MATCH "Not available yet:.*" later_help "${out}")
expect_match("${later_help}" "--dit_fsdp" "--dit_fsdp is listed as not available yet")
foreach(available --tf32 --use_magcache --compile)
  if(later_help MATCHES "\n *${available}[ \n]")
    message(FATAL_ERROR "generate --help lists ${available} as not available yet:\n${later_help}")
  endif()
endforeach()

# ---- a good run: video, noise and latent files, progress on stderr, timing on stdout ----
run_wanrt(0 generate ${good} --save_file "${WORK}/out/video.mp4" --save_noise "${WORK}/noise.safetensors"
          --save_latent "${WORK}/latent.safetensors" --sample_guide_scale 2,4 --sample_solver dpm++
          --offload_model True --t5_cpu --convert_model_dtype --tf32 True --compile
          --compile_mode max-autotune --vae_dtype fp32 --attention int8)
expect_match("${err}" "step 1/3" "progress line of step 1")
expect_match("${err}" "step 3/3" "progress line of the last step")
expect_match("${err}" "(high|low)-noise expert" "progress names the expert")
expect_match("${err}" "s/step" "progress gives s/step")
expect_match("${err}" "warning: --size 64\\*64 is not one of the sizes" "untrained size warning")
expect_match("${out}" "noise by design" "random demo weights are said plainly")
expect_match("${out}" "Timing by stage" "timing summary")
foreach(stage load text "VAE encode" denoise "VAE decode" write total)
  expect_match("${out}" "\n  ${stage} +[0-9]+\\.[0-9]+ s" "timing summary row ${stage}")
endforeach()
expect_match("${out}" "guide scale 2 \\(low-noise expert\\) / 4 \\(high-noise expert\\)" "guide pair")
expect_match("${out}" "--t5_cpu changes nothing" "note on --t5_cpu")
foreach(flag --offload_model --tf32 --vae_dtype --attention --compile)
  expect_match("${out}" "Note: ${flag} changes nothing on the CPU backend" "note on ${flag}")
endforeach()
expect_match("${out}" "backend +cpu, float32 \\(--backend cpu\\)" "header names the backend")
expect_match("${out}" "denoise +[0-9.]+ s .*6 DiT calls: 6 computed, 0 skipped\n" "DiT calls counted")
# The final line: the written path (MP4, or AVI where this build cannot write MP4), frames,
# size and fps. A 4:3 image at area 64*64 gives 64x48 (spec §2.2).
string(REGEX MATCH "Saved ([^\n]+): 5 frames, 64x48, 16 fps[^\n]*\n$" final_line "${out}")
if(NOT final_line)
  message(FATAL_ERROR "the last line does not give path, 5 frames, 64x48, 16 fps:\n${out}")
endif()
set(video "${CMAKE_MATCH_1}")
if(NOT EXISTS "${video}")
  message(FATAL_ERROR "the video ${video} that wanrt reported does not exist")
endif()
file(SIZE "${video}" video_bytes)
if(video_bytes LESS 1000)
  message(FATAL_ERROR "the video ${video} holds only ${video_bytes} bytes")
endif()
foreach(written noise latent)
  if(NOT EXISTS "${WORK}/${written}.safetensors")
    message(FATAL_ERROR "--save_${written} wrote no ${WORK}/${written}.safetensors")
  endif()
endforeach()

# Same flags and the saved noise instead of the seed: the very same latent, byte for byte.
run_wanrt(0 generate ${good} --save_file "${WORK}/out/again.mp4" --noise_file "${WORK}/noise.safetensors"
          --save_latent "${WORK}/latent_again.safetensors" --sample_guide_scale 2,4 --sample_solver dpm++)
expect_match("${out}" "noise +from " "header names the noise file")
file(SHA256 "${WORK}/latent.safetensors" first_hash)
file(SHA256 "${WORK}/latent_again.safetensors" second_hash)
# The metadata differs (it records the noise file), so compare the tensor bytes: the data
# section is the file's tail, 16·2·6·8 float32 values.
file(SIZE "${WORK}/latent.safetensors" first_size)
file(SIZE "${WORK}/latent_again.safetensors" second_size)
math(EXPR data_bytes "16 * 2 * 6 * 8 * 4")
math(EXPR first_offset "${first_size} - ${data_bytes}")
math(EXPR second_offset "${second_size} - ${data_bytes}")
file(READ "${WORK}/latent.safetensors" first_data OFFSET ${first_offset} HEX)
file(READ "${WORK}/latent_again.safetensors" second_data OFFSET ${second_offset} HEX)
string(LENGTH "${first_data}" hex_length)
math(EXPR expected_hex_length "${data_bytes} * 2")
if(NOT hex_length EQUAL expected_hex_length)
  message(FATAL_ERROR "latent data is ${hex_length} hex digits, expected ${expected_hex_length}")
endif()
if(NOT first_data STREQUAL second_data)
  message(FATAL_ERROR "the same noise file gave a different latent")
endif()

# MagCache (the seed's E012K2R20) at 8 steps: the high-noise phase is computed, later calls are
# skipped, the progress says which, and the summary counts them.
run_wanrt(0 generate ${good} --sample_steps 8 --save_file "${WORK}/out/magcache.mp4"
          --use_magcache --magcache_thresh 0.12 --magcache_K 2 --retention_ratio 0.2)
expect_match("${out}" "MagCache +thresh 0.12, K 2, retention 0.2" "header shows the MagCache setting")
expect_match("${out}" "16 DiT calls: [0-9]+ computed, [1-9][0-9]* skipped \\(MagCache\\)" "MagCache skips counted")
expect_match("${err}" "cached: cond" "progress shows cached calls")
# Settings without --use_magcache change nothing, and say so.
run_wanrt(0 generate ${good} --save_file "${WORK}/out/nomagcache.mp4" --magcache_K 4)
expect_match("${out}" "MagCache settings change nothing without --use_magcache" "note on unused settings")
expect_match("${out}" "6 DiT calls: 6 computed, 0 skipped\n" "no skips without --use_magcache")

# Calibration writes a ratio table that MagCache then runs on.
run_wanrt(0 generate ${good} --sample_steps 4 --save_file "${WORK}/out/calibrate.mp4"
          --magcache_calibrate "${WORK}/ratios.json")
expect_match("${out}" "Saved the MagCache ratio table \\(6 ratios for 4 steps\\)" "calibration saved")
file(READ "${WORK}/ratios.json" ratios_json)
expect_match("${ratios_json}" "\"calibrated_steps\": 4" "calibrated table's step count")
run_wanrt(0 generate ${good} --sample_steps 4 --save_file "${WORK}/out/calibrated.mp4" --use_magcache
          --magcache_ratios "${WORK}/ratios.json" --magcache_thresh 10 --retention_ratio 0)
expect_match("${out}" "8 DiT calls: [0-9]+ computed, [1-9][0-9]* skipped \\(MagCache\\)" "run on the calibrated table")

# --backend auto says what it chose and why; where it chose the CPU, --backend cuda is an error
# that says why (no CUDA in this build, or no GPU).
list(REMOVE_ITEM good --backend cpu)
run_wanrt(0 generate ${good} --sample_steps 1 --save_file "${WORK}/out/auto.mp4" --backend auto)
expect_match("${out}" "backend +(cpu|cuda)[^\n]*\\(auto: " "auto backend explained")
set(auto_chose_cpu OFF)
if(out MATCHES "backend +cpu")
  set(auto_chose_cpu ON)
endif()
list(APPEND good --backend cpu)

# The default --save_file, as generate.py names it, in the working folder; a random seed is
# printed so the run can be repeated.
run_wanrt(0 generate --ckpt_dir "${demo}" --image "${image}" --prompt "a sunny/field" --size 64*64
          --frame_num 5 --sample_steps 1 --backend cpu)
expect_match("${out}" "seed +[0-9]+ \\(random; pass --base_seed [0-9]+" "random seed is printed")
file(GLOB default_files "${WORK}/i2v-A14B_64[*]64_1_a_sunny_field_*_*.mp4" "${WORK}/i2v-A14B_64[*]64_1_a_sunny_field_*_*.avi")
if(NOT default_files)
  file(GLOB everything "${WORK}/*")
  message(FATAL_ERROR "no default-named video in ${WORK}; found: ${everything}\n${out}")
endif()

# ---- bad inputs: status 1, "wanrt: error: " naming the flag or file, and no video ----
function(expect_failure regex)
  run_wanrt(1 generate ${ARGN})
  expect_match("${err}" "wanrt: error: ${regex}" "generate ${ARGN}")
  if(EXISTS "${WORK}/bad.mp4" OR EXISTS "${WORK}/bad.avi")
    message(FATAL_ERROR "generate ${ARGN} failed but wrote a video")
  endif()
endfunction()
set(bad_out --save_file "${WORK}/bad.mp4")

regex_escape(missing_image "${WORK}/no-such-image.png")
expect_failure("--image ${missing_image}: no such file"
               ${good} ${bad_out} --image "${WORK}/no-such-image.png")
file(WRITE "${WORK}/not-an-image.png" "this is text, not a PNG")
regex_escape(text_image "${WORK}/not-an-image.png")
expect_failure("--image ${text_image}: .*not a JPEG or PNG" ${good} ${bad_out} --image "${WORK}/not-an-image.png")

# A checkpoint with a part missing: the pipeline's error, naming what is missing.
file(COPY "${demo}/" DESTINATION "${WORK}/incomplete")
file(REMOVE_RECURSE "${WORK}/incomplete/low_noise_model")
expect_failure("--ckpt_dir .*incomplete.*low_noise_model" ${good} ${bad_out} --ckpt_dir "${WORK}/incomplete")
expect_failure("--ckpt_dir .*no-such-folder: no such folder" ${good} ${bad_out} --ckpt_dir "${WORK}/no-such-folder")

expect_failure("--frame_num 10: the frame count must be 4n\\+1" ${good} ${bad_out} --frame_num 10)
expect_failure("--frame_num 0: " ${good} ${bad_out} --frame_num 0)
expect_failure("--size '100\\*64': width and height must be multiples of 16" ${good} ${bad_out} --size 100*64)
expect_failure("--size 'large': expected WIDTH\\*HEIGHT" ${good} ${bad_out} --size large)
expect_failure("--prompt: the prompt is empty" ${good} ${bad_out} --prompt "   ")
expect_failure("--save_file .*: the folder .*no-such-folder does not exist"
               ${good} --save_file "${WORK}/no-such-folder/out.mp4")
file(WRITE "${WORK}/a-file" "")
expect_failure("--save_file .*a-file/out.mp4: .*a-file is not a folder" ${good} --save_file "${WORK}/a-file/out.mp4")
expect_failure("--save_file .*: is a folder" ${good} --save_file "${WORK}")
expect_failure("--save_latent .*: the folder .*no-such-folder does not exist"
               ${good} ${bad_out} --save_latent "${WORK}/no-such-folder/latent.safetensors")

# Noise files: no tensor named noise; the wrong shape (noise of a 64x48 video for a 144x96
# one); not a safetensors file at all. Each names the file and the expected shape.
regex_escape(latent_file "${WORK}/latent.safetensors")
expect_failure("--noise_file ${latent_file}: has no tensor named 'noise' \\(it holds: latent\\); expected F32 noise of shape \\[16, 2, 6, 8\\]"
               ${good} ${bad_out} --noise_file "${WORK}/latent.safetensors")
regex_escape(noise_file "${WORK}/noise.safetensors")
expect_failure("--noise_file ${noise_file}: tensor 'noise' has shape \\[16, 2, 6, 8\\], expected \\[16, 2, 12, 18\\]"
               ${good} ${bad_out} --size 128*128 --noise_file "${WORK}/noise.safetensors")
expect_failure("--noise_file ${noise_file}: tensor 'noise' has shape \\[16, 2, 6, 8\\], expected \\[16, 3, 6, 8\\]"
               ${good} ${bad_out} --frame_num 9 --noise_file "${WORK}/noise.safetensors")
expect_failure("--noise_file ${text_image}: not a readable safetensors file"
               ${good} ${bad_out} --noise_file "${WORK}/not-an-image.png")
expect_failure("--noise_file .*missing.safetensors: no such file"
               ${good} ${bad_out} --noise_file "${WORK}/missing.safetensors")

expect_failure("--sample_guide_scale '3,x': expected one number" ${good} ${bad_out} --sample_guide_scale 3,x)
expect_failure("--sample_guide_scale '-1': scales must be finite and not negative" ${good} ${bad_out} --sample_guide_scale -1)
expect_failure("--sample_solver euler: unknown solver; choose unipc or dpm\\+\\+" ${good} ${bad_out} --sample_solver euler)
expect_failure("--offload_model 'maybe': boolean value expected \\(True/False\\)" ${good} ${bad_out} --offload_model maybe)
expect_failure("--task t2v-A14B: not supported yet" ${good} ${bad_out} --task t2v-A14B)
expect_failure("--task frobnicate: unknown task" ${good} ${bad_out} --task frobnicate)

# Flags of features wanrt does not have yet are refused, with or without a value.
foreach(later --dit_fsdp --t5_fsdp --use_prompt_extend)
  expect_failure("${later}: not available yet" ${good} ${bad_out} ${later})
endforeach()
expect_failure("--dit_fsdp: not available yet" ${good} ${bad_out} --dit_fsdp True)
expect_failure("--ulysses_size 8: not available yet" ${good} ${bad_out} --ulysses_size 8)

# Backend and MagCache flags with bad values.
if(auto_chose_cpu)
  expect_failure("--backend cuda: " ${good} ${bad_out} --backend cuda)
endif()
expect_failure("--backend gpu: unknown backend; choose auto, cpu or cuda" ${good} ${bad_out} --backend gpu)
expect_failure("--vae_dtype fp8: choose fp16, bf16 or fp32" ${good} ${bad_out} --vae_dtype fp8)
expect_failure("--attention fp4: choose auto, bf16, int8 or portable" ${good} ${bad_out} --attention fp4)
expect_failure("--tf32 'maybe': boolean value expected" ${good} ${bad_out} --tf32 maybe)
expect_failure("--use_magcache 'perhaps': boolean value expected" ${good} ${bad_out} --use_magcache perhaps)
expect_failure("--magcache_K -1: " ${good} ${bad_out} --use_magcache --magcache_K -1)
expect_failure("--magcache_thresh -0.5: must be a number >= 0" ${good} ${bad_out} --use_magcache --magcache_thresh -0.5)
expect_failure("--retention_ratio 1.5: must lie between 0 and 1" ${good} ${bad_out} --use_magcache --retention_ratio 1.5)
expect_failure("--magcache_ratios MagCache ratio table .*missing.json: cannot open" ${good} ${bad_out}
               --use_magcache --magcache_ratios "${WORK}/missing.json")
expect_failure("--magcache_calibrate computes every DiT call.*cannot run together with --use_magcache"
               ${good} ${bad_out} --use_magcache --magcache_calibrate "${WORK}/r.json")
expect_failure("--magcache_calibrate needs --sample_steps 2 or more" ${good} ${bad_out}
               --sample_steps 1 --magcache_calibrate "${WORK}/r.json")
expect_failure("--magcache_calibrate .*: the folder .*no-such-folder does not exist" ${good} ${bad_out}
               --magcache_calibrate "${WORK}/no-such-folder/r.json")

# Required flags.
expect_failure("--prompt is required" --ckpt_dir "${demo}" --image "${image}" ${bad_out})
expect_failure("--image is required" --ckpt_dir "${demo}" --prompt x ${bad_out})
message(STATUS "generate_cli: all checks passed")
