// Minimal self-contained test harness (no gtest): TEST() registers a case,
// CHECK*() record failures without aborting the case. The runner prints one
// line per case and ends with "N passed, M failed".
#ifndef DYSSECT_TESTS_TEST_H_
#define DYSSECT_TESTS_TEST_H_

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

namespace dtest {

struct Case {
  const char* name;
  void (*fn)();
};

inline std::vector<Case>& Registry() {
  static std::vector<Case> r;
  return r;
}

inline int& Failures() {
  static int f = 0;
  return f;
}

struct Registrar {
  Registrar(const char* name, void (*fn)()) { Registry().push_back(Case{name, fn}); }
};

}  // namespace dtest

#define TEST(name)                                            \
  static void test_##name();                                  \
  static dtest::Registrar registrar_##name(#name, test_##name); \
  static void test_##name()

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::printf("    %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      dtest::Failures()++;                                                     \
    }                                                                          \
  } while (0)

#define CHECK_EQ(a, b)                                                                  \
  do {                                                                                  \
    const auto va_ = (a);                                                               \
    const auto vb_ = (b);                                                               \
    if (!(va_ == vb_)) {                                                                \
      std::printf("    %s:%d: CHECK_EQ failed: %s == %s (%llu vs %llu)\n", __FILE__,    \
                  __LINE__, #a, #b, static_cast<unsigned long long>(va_),               \
                  static_cast<unsigned long long>(vb_));                                \
      dtest::Failures()++;                                                              \
    }                                                                                   \
  } while (0)

// Stops the current case (after recording a failure) when a precondition fails.
#define REQUIRE(cond)   \
  do {                  \
    if (!(cond)) {      \
      CHECK(cond);      \
      return;           \
    }                   \
  } while (0)

#endif  // DYSSECT_TESTS_TEST_H_
