// Test runner: runs every registered case (or those whose name contains one
// of the arguments) and prints "N passed, M failed" last.
#include <chrono>
#include <cstdio>
#include <cstring>

#include "test.h"

int main(int argc, char** argv) {
  int passed = 0, failed = 0;
  for (const dtest::Case& c : dtest::Registry()) {
    if (argc > 1) {
      bool match = false;
      for (int i = 1; i < argc; i++) match = match || std::strstr(c.name, argv[i]) != nullptr;
      if (!match) continue;
    }
    const int before = dtest::Failures();
    const auto t0 = std::chrono::steady_clock::now();
    c.fn();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const bool ok = dtest::Failures() == before;
    std::printf("%s %s (%.0f ms)\n", ok ? "PASS" : "FAIL", c.name, ms);
    std::fflush(stdout);
    (ok ? passed : failed)++;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
