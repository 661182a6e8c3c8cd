// Placeholder entry point; replaced by the command-line program (inspect, make-demo-checkpoint).
#include <cstdio>
int main() { std::puts("wanrt"); return 0; }
