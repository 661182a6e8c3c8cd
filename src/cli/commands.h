// The `wanrt` subcommands. Each one registers its flags on the CLI11 app and returns the
// function that runs it after a successful parse; main() only dispatches, so a new subcommand
// (generate, ...) is one more add_*_command() here and one line in main.cpp.
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace wanrt::cli {

struct Subcommand {
  CLI::App* parser = nullptr;
  std::function<int()> run;  // returns the exit status; throws wanrt::Error for user errors
};

Subcommand add_inspect_command(CLI::App& app);
Subcommand add_make_demo_command(CLI::App& app);
Subcommand add_generate_command(CLI::App& app);
Subcommand add_quantize_command(CLI::App& app);

}  // namespace wanrt::cli
