#include "io/staged_output.h"

#include <atomic>
#include <filesystem>
#include <system_error>

#include <unistd.h>

#include "core/error.h"

namespace wanrt {

namespace fs = std::filesystem;

StagedOutput::StagedOutput(std::string final_path) : final_path_(std::move(final_path)) {
  WANRT_CHECK(!final_path_.empty(), "output path is empty");
  const fs::path target(final_path_);
  WANRT_CHECK(target.has_filename(), "output path ", final_path_, " names a folder, not a file");
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  WANRT_CHECK(fs::is_directory(folder, ec), "cannot write ", final_path_, ": folder ",
              folder.string(), " does not exist");
  // pid + a process-wide counter keeps concurrent writers (threads, ranks) apart.
  static std::atomic<unsigned> counter{0};
  const std::string temp_name = str_cat(".", target.filename().string(), ".tmp-", ::getpid(), "-",
                                        counter.fetch_add(1));
  temp_path_ = (folder / temp_name).string();
}

StagedOutput::~StagedOutput() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(temp_path_, ec);  // nothing to report from a destructor; best effort
}

void StagedOutput::commit() {
  std::error_code ec;
  fs::rename(temp_path_, final_path_, ec);
  WANRT_CHECK(!ec, "cannot move ", temp_path_, " to ", final_path_, ": ", ec.message());
  committed_ = true;
}

}  // namespace wanrt
