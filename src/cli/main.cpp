// wanrt: the command-line program. Every failure ends as "wanrt: error: <message>" on stderr
// and exit status 1: user errors (wanrt::Error, bad flags) and anything unexpected alike, so a
// script never sees an uncaught exception or an abort.
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>
#include <new>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"

#ifndef WANRT_VERSION
#define WANRT_VERSION "unknown"
#endif

namespace {

int report_error(const std::string& message) {
  std::cerr << "wanrt: error: " << message << "\n";
  return 1;
}

int run(int argc, char** argv) {
  CLI::App app{"wanrt: inference engine for the Wan2.2 image-to-video models (I2V-A14B)", "wanrt"};
  app.set_version_flag("--version", std::string("wanrt ") + WANRT_VERSION);
  app.require_subcommand(1);
  app.footer("Run `wanrt COMMAND --help` for the flags of one command.");

  std::vector<wanrt::cli::Subcommand> commands = {
      wanrt::cli::add_inspect_command(app),
      wanrt::cli::add_make_demo_command(app),
      wanrt::cli::add_generate_command(app),
      wanrt::cli::add_quantize_command(app),
  };

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version arrive as "errors" with exit code 0; CLI11 prints them.
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    return report_error(std::string(e.what()) + " (run `wanrt --help` for usage)");
  }
  for (const auto& command : commands)
    if (command.parser->parsed()) return command.run();
  return report_error("no command given (run `wanrt --help` for usage)");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const wanrt::Error& e) {
    return report_error(e.what());
  } catch (const std::bad_alloc&) {
    return report_error("out of memory");
  } catch (const std::exception& e) {
    return report_error(std::string("unexpected failure: ") + e.what());
  } catch (...) {
    return report_error("unexpected failure of unknown type");
  }
}
