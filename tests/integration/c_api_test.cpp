// The C API (client/tessera.h, docs/API.md) against a real system of four engines: container
// I/O, reads at an epoch, conditions, buffers too small, punches, read-only handles, and the
// error of each bad argument, with its thread-local message.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "client/tessera.h"
#include "tests/integration/dtx_harness.hpp"

using namespace tessera;
using namespace tessera::testing;

namespace {

struct CSystem : SystemHarness {
  CSystem() : SystemHarness("RP_3G1", 1) {}
};

std::string fetch(tessera_cont* co, uint64_t hi, uint64_t lo, const char* dkey, int kind,
                  uint64_t offset, uint64_t length, uint64_t epoch) {
  char buf[256];
  size_t n = 0;
  int rc = tessera_cont_fetch(co, hi, lo, dkey, "v", kind, offset, length, epoch, buf, sizeof buf,
                              &n);
  if (rc != 0) return std::string("rc ") + std::to_string(rc) + ": " + tessera_last_error();
  return std::string(buf, n);
}

}  // namespace

TEST(CApi, ContainerCallsStoreFetchAndPunch) {
  CSystem h;
  ASSERT_TRUE(h.c);
  tessera_client* cl = nullptr;
  ASSERT_EQ(tessera_connect_system(h.sys->mgmt().c_str(), &cl), 0) << tessera_last_error();
  tessera_cont* co = nullptr;
  ASSERT_EQ(tessera_cont_open(cl, "tank", "c", 1, &co), 0) << tessera_last_error();
  uint64_t hi = 0, lo = 0;
  ASSERT_EQ(tessera_cont_oid(co, 1, 77, nullptr, &hi, &lo), 0) << tessera_last_error();

  uint64_t e1 = 0, e2 = 0;
  ASSERT_EQ(tessera_cont_update(co, hi, lo, "d", "v", TESSERA_SINGLE, 0, "one", 3,
                                TESSERA_COND_NONE, &e1),
            0)
      << tessera_last_error();
  ASSERT_EQ(tessera_cont_update(co, hi, lo, "d", "v", TESSERA_SINGLE, 0, "two!", 4,
                                TESSERA_COND_NONE, &e2),
            0)
      << tessera_last_error();
  EXPECT_GT(e2, e1);
  EXPECT_EQ(fetch(co, hi, lo, "d", TESSERA_SINGLE, 0, 0, 0), "two!");
  EXPECT_EQ(fetch(co, hi, lo, "d", TESSERA_SINGLE, 0, 0, e1), "one") << "a read at an epoch";

  // A buffer too small: -ERANGE and the size needed.
  char small[2];
  size_t need = 0;
  EXPECT_EQ(tessera_cont_fetch(co, hi, lo, "d", "v", TESSERA_SINGLE, 0, 0, 0, small, sizeof small,
                               &need),
            -TESSERA_ERANGE);
  EXPECT_EQ(need, 4u);

  // Conditions: an insert over a value, an update of nothing.
  EXPECT_EQ(tessera_cont_update(co, hi, lo, "d", "v", TESSERA_SINGLE, 0, "x", 1,
                                TESSERA_COND_INSERT, nullptr),
            -TESSERA_EEXIST);
  EXPECT_EQ(tessera_cont_update(co, hi, lo, "nothing", "v", TESSERA_SINGLE, 0, "x", 1,
                                TESSERA_COND_UPDATE, nullptr),
            -TESSERA_ENOENT);
  EXPECT_EQ(tessera_cont_update(co, hi, lo, "d", "v", TESSERA_SINGLE, 0, "x", 1, 9, nullptr),
            -TESSERA_EINVAL);
  EXPECT_EQ(fetch(co, hi, lo, "d", TESSERA_SINGLE, 0, 0, 0), "two!") << "a refused update changed it";

  // An array range, then a punch of the akey.
  ASSERT_EQ(tessera_cont_update(co, hi, lo, "arr", "v", TESSERA_ARRAY, 4096, "12345678", 8,
                                TESSERA_COND_NONE, nullptr),
            0)
      << tessera_last_error();
  EXPECT_EQ(fetch(co, hi, lo, "arr", TESSERA_ARRAY, 4098, 4, 0), "3456");
  ASSERT_EQ(tessera_cont_punch(co, hi, lo, "d", "v"), 0) << tessera_last_error();
  EXPECT_EQ(fetch(co, hi, lo, "d", TESSERA_SINGLE, 0, 0, 0), "") << "a punched value reads empty";
  EXPECT_EQ(fetch(co, hi, lo, "d", TESSERA_SINGLE, 0, 0, e2), "two!") << "the past stays";

  // A read-only handle reads and may not write.
  tessera_cont* ro = nullptr;
  ASSERT_EQ(tessera_cont_open(cl, "tank", "c", 0, &ro), 0) << tessera_last_error();
  EXPECT_EQ(fetch(ro, hi, lo, "arr", TESSERA_ARRAY, 4096, 8, 0), "12345678");
  EXPECT_EQ(tessera_cont_update(ro, hi, lo, "d", "v", TESSERA_SINGLE, 0, "x", 1, TESSERA_COND_NONE,
                                nullptr),
            -TESSERA_EPERM)
      << tessera_last_error();
  EXPECT_EQ(tessera_cont_close(ro), 0);

  EXPECT_EQ(tessera_cont_close(co), 0) << tessera_last_error();
  tessera_disconnect(cl);
}

TEST(CApi, BadArgumentsAndUnknownNamesAreClearErrors) {
  CSystem h;
  ASSERT_TRUE(h.c);
  tessera_client* cl = nullptr;
  EXPECT_EQ(tessera_connect_system(nullptr, &cl), -TESSERA_EINVAL);
  EXPECT_NE(std::string(tessera_last_error()).find("null"), std::string::npos);
  ASSERT_EQ(tessera_connect_system(h.sys->mgmt().c_str(), &cl), 0) << tessera_last_error();
  tessera_cont* co = nullptr;
  EXPECT_EQ(tessera_cont_open(cl, "nosuchpool", "c", 1, &co), -TESSERA_ENOENT);
  EXPECT_NE(std::string(tessera_last_error()).find("nosuchpool"), std::string::npos)
      << tessera_last_error();
  EXPECT_EQ(tessera_cont_open(cl, "tank", "nosuchcont", 1, &co), -TESSERA_ENOENT);
  EXPECT_NE(std::string(tessera_last_error()).find("nosuchcont"), std::string::npos)
      << tessera_last_error();
  EXPECT_EQ(co, nullptr);
  char buf[8];
  size_t n = 0;
  EXPECT_EQ(tessera_cont_update(nullptr, 0, 1, "d", "a", TESSERA_SINGLE, 0, "x", 1,
                                TESSERA_COND_NONE, nullptr),
            -TESSERA_EINVAL);
  EXPECT_EQ(tessera_cont_fetch(nullptr, 0, 1, "d", "a", TESSERA_SINGLE, 0, 0, 0, buf, sizeof buf,
                               &n),
            -TESSERA_EINVAL);
  EXPECT_EQ(tessera_cont_punch(nullptr, 0, 1, "d", "a"), -TESSERA_EINVAL);
  EXPECT_EQ(tessera_cont_close(nullptr), 0);
  EXPECT_STREQ(tessera_version(), "0.1.0");
  tessera_disconnect(cl);
}
