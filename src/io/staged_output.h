// StagedOutput: write a file (or folder) next to its final path and move it into place only
// when complete, so a crash or an error never leaves a half-written video or image behind
// and never clobbers an existing file. The temporary sits in the same folder so the final
// rename is atomic on one filesystem.
#pragma once

#include <string>

namespace wanrt {

class StagedOutput {
 public:
  // Checks that the destination's folder exists; the temporary path is chosen, not created.
  explicit StagedOutput(std::string final_path);
  // Removes the temporary (file or folder) unless commit() succeeded.
  ~StagedOutput();
  StagedOutput(const StagedOutput&) = delete;
  StagedOutput& operator=(const StagedOutput&) = delete;

  const std::string& temp_path() const { return temp_path_; }
  const std::string& final_path() const { return final_path_; }
  // Renames the temporary onto the final path (replacing a file there); errors name both.
  void commit();

 private:
  std::string final_path_;
  std::string temp_path_;
  bool committed_ = false;
};

}  // namespace wanrt
