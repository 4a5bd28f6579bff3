// The store's part of the consistency check (storage/store_check.cpp). Two copies of the same
// keys (objects A and B of one store) get the same seeded random history, epochs included, and
// B diverges below an epoch E (changes A never got, changes it missed): their digests at E
// differ. After B's history at or below E is replaced by A's, B reads as A at every epoch, its
// digests equal A's, what B got above E is still there, and all of it survives a restart. And
// the drop of a former home's keys (the reclaim), which a later fill must find empty.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <filesystem>
#include <map>
#include <random>

#include "storage/store.hpp"
#include "tests/unit/storage/store_fixture.hpp"

using namespace tessera;
using namespace tessera::storage;
using namespace tessera::storage::testing;

namespace {

const ObjectId kA{7, 1}, kB{7, 2};
const std::vector<std::string> kDkeys = {"d0", "d1"};
const std::vector<std::string> kAkeys = {"s0", "a1", "a8"};  // a single value, two arrays

uint32_t rsize_of(const std::string& akey) { return akey == "a8" ? 8 : 1; }
ValueKind kind_of(const std::string& akey) {
  return akey[0] == 's' ? ValueKind::single : ValueKind::array;
}

class CheckTest : public StoreTest {
 protected:
  // One random akey-level change of `oid` at `epoch`.
  Status change(std::mt19937_64& rng, ObjectId oid, uint64_t epoch) {
    const std::string dk = kDkeys[rng() % kDkeys.size()];
    const std::string ak = kAkeys[rng() % kAkeys.size()];
    const char fill = static_cast<char>('a' + rng() % 26);
    const uint32_t rs = rsize_of(ak);
    const uint64_t pick = rng() % 10;
    return run_on(target, [&]() -> Status {
      if (pick == 0) return store->punch(oid, dk, ak, epoch).status();
      if (ak[0] == 's') {
        std::string v(1 + rng() % 6000, fill);  // inline and extent-backed
        UpdateOptions uo;
        uo.epoch = epoch;
        return store->update(oid, dk, ak, ValueKind::single, 0, bytes(v), crc(v), uo).status();
      }
      const uint64_t off = rng() % 40, n = 1 + rng() % 24;
      if (pick <= 2) return store->punch_range(oid, dk, ak, off, n, rs, epoch).status();
      std::string v(n * rs, fill);
      UpdateOptions uo;
      uo.rsize = rs;
      uo.epoch = epoch;
      return store->update(oid, dk, ak, ValueKind::array, off, bytes(v), crc(v), uo).status();
    });
  }

  // What (dkey, akey) of `oid` shows at `epoch`, holes as '.'; "-" when not visible.
  std::string read(ObjectId oid, const std::string& dk, const std::string& ak, uint64_t epoch) {
    FetchOptions fo;
    fo.rsize = rsize_of(ak);
    auto r = run_on(target, [&] { return store->fetch(oid, dk, ak, kind_of(ak), 0, 0, epoch, fo); });
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    if (!r || !r->exists) return "-";
    std::string v(r->data.view());
    for (const auto& [off, len] : r->holes) {
      for (uint64_t i = off * fo.rsize; i < (off + len) * fo.rsize && i < v.size(); ++i) v[i] = '.';
    }
    return v;
  }

  AkeyDigest digest(ObjectId oid, const std::string& dk, const std::string& ak, uint64_t epoch) {
    auto d = run_on(target, [&] { return store->akey_digest(oid, dk, ak, epoch); });
    EXPECT_TRUE(d.is_ok()) << d.status().to_string();
    return d ? *d : AkeyDigest{};
  }

  // Every key of A and B at each epoch of `epochs`: equal where `equal`, and how many differ.
  size_t differences(const std::vector<uint64_t>& epochs) {
    size_t n = 0;
    for (uint64_t e : epochs) {
      for (const auto& dk : kDkeys) {
        for (const auto& ak : kAkeys) n += read(kA, dk, ak, e) != read(kB, dk, ak, e);
      }
    }
    return n;
  }

  Status replace(uint64_t upto) {
    return run_on(target, [&]() -> Status {
      for (const auto& dk : kDkeys) {
        for (const auto& ak : kAkeys) {
          auto x = store->export_akey(kA, dk, ak);
          if (!x) return x.status();
          std::erase_if(x->versions, [upto](const AkeyExport::Ver& v) { return v.epoch > upto; });
          std::erase_if(x->akey_punches, [upto](uint64_t e) { return e > upto; });
          TESSERA_TRY(store->replace_history(kB, dk, ak, upto, *x));
        }
      }
      return Status();
    });
  }
};

TEST_P(CheckTest, ReplacingADivergedHistoryMakesItReadAsTheGoodOneAtEveryEpoch) {
  for (uint64_t seed : {1, 2, 3, 4, 5, 6, 7, 8}) {
    SCOPED_TRACE(fmt::format("seed {}", seed));
    ASSERT_TRUE(open().is_ok());
    std::mt19937_64 rng(seed), div(seed * 977);
    uint64_t epoch = run_on(target, [&] { return store->now_epoch(); }) + 1000;
    std::vector<uint64_t> epochs;
    // The common history, with B diverging now and then below E.
    for (int i = 0; i < 60; ++i) {
      epoch += 10;
      std::mt19937_64 same = rng;  // A and B get the same change
      ASSERT_TRUE(change(rng, kA, epoch).is_ok());
      if (div() % 7 != 0) {
        ASSERT_TRUE(change(same, kB, epoch).is_ok());  // else B missed it
      }
      if (div() % 6 == 0) {
        ASSERT_TRUE(change(div, kB, epoch + 5).is_ok());  // one A never got
      }
      epochs.push_back(epoch);
    }
    const uint64_t e = epoch + 7;
    size_t differ = 0;
    for (const auto& dk : kDkeys) {
      for (const auto& ak : kAkeys) differ += digest(kA, dk, ak, e) != digest(kB, dk, ak, e);
    }
    EXPECT_EQ(differ > 0, differences({e}) > 0) << "digests and reads disagree on a difference";
    // Above E both get the same changes, and B one more of its own (a write after the check).
    for (int i = 0; i < 10; ++i) {
      epoch += 10;
      std::mt19937_64 same = rng;
      ASSERT_TRUE(change(rng, kA, epoch).is_ok());
      ASSERT_TRUE(change(same, kB, epoch).is_ok());
      epochs.push_back(epoch);
    }
    ASSERT_TRUE(replace(e).is_ok());
    for (const auto& dk : kDkeys) {
      for (const auto& ak : kAkeys) {
        EXPECT_EQ(digest(kA, dk, ak, e), digest(kB, dk, ak, e)) << dk << "/" << ak;
        EXPECT_EQ(digest(kA, dk, ak, 0), digest(kB, dk, ak, 0)) << dk << "/" << ak;
      }
    }
    EXPECT_EQ(differences(epochs), 0u);
    // B's own write above E stays; a restart (checkpoint + log) keeps all of it.
    epoch += 10;
    ASSERT_TRUE(change(div, kB, epoch).is_ok());
    std::map<std::string, std::string> b_now;
    for (const auto& dk : kDkeys) {
      for (const auto& ak : kAkeys) b_now[dk + ak] = read(kB, dk, ak, 0);
    }
    close();
    ASSERT_TRUE(open().is_ok());
    EXPECT_EQ(differences(epochs), 0u) << "after a restart";
    for (const auto& dk : kDkeys) {
      for (const auto& ak : kAkeys) EXPECT_EQ(read(kB, dk, ak, 0), b_now[dk + ak]) << dk << ak;
    }
    close();
    std::filesystem::remove(dir.file("target.dat"));
  }
}

TEST_P(CheckTest, ADamagedCopyDigestsAsDamaged) {
  ASSERT_TRUE(open().is_ok());
  const std::string v(64u << 10, 'q');  // an extent, not inline
  auto e = put(kA, "d", "a", v);
  ASSERT_TRUE(e.is_ok()) << e.status().to_string();
  AkeyDigest good = digest(kA, "d", "a", 0);
  EXPECT_TRUE(good.exists);
  EXPECT_FALSE(good.damaged);
  EXPECT_EQ(good.size, v.size());
  close();
  // Flip bytes of the value in the file.
  {
    std::string file = dir.file("target.dat");
    FILE* f = std::fopen(file.c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    std::string all(std::filesystem::file_size(file), '\0');
    ASSERT_EQ(std::fread(all.data(), 1, all.size(), f), all.size());
    const size_t at = all.find(v.substr(0, 4096));
    ASSERT_NE(at, std::string::npos);
    std::fseek(f, static_cast<long>(at + 100), SEEK_SET);
    std::fputs("damage", f);
    std::fclose(f);
  }
  ASSERT_TRUE(open().is_ok());
  AkeyDigest bad = digest(kA, "d", "a", 0);
  EXPECT_TRUE(bad.damaged);
}

// The reclaim of a former home's keys (TargetStore::drop_keys, rebuild/reclaim.hpp). B is a
// former home of A's keys: it kept an old value while A went on (a delete, then aggregation
// dropped the delete and what it hid). Merging A's history into what B kept brings the old value
// back; after B drops its keys, the same fill makes B read exactly as A. The drop frees the
// space after the checkpoint, is durable after it, and does nothing when `still` says no.
TEST_P(CheckTest, DroppedKeysLeaveNothingForALaterFillToMergeWith) {
  ASSERT_TRUE(open().is_ok());
  const std::string big(64u << 10, 'o');  // an extent, not inline
  for (ObjectId oid : {kA, kB}) {
    ASSERT_TRUE(put(oid, "d0", "s0", big).is_ok());
    ASSERT_TRUE(put(oid, "d1", "s0", "kept").is_ok());
    ASSERT_TRUE(put(oid, "d1", "s1", "dropped").is_ok());
  }
  // A alone: d0 deleted, then aggregated away with what it hid.
  ASSERT_TRUE(run_on(target, [&] { return store->punch(kA, "d0", {}); }).is_ok());
  aggregate();
  auto fill = [&](ObjectId from, ObjectId to, const std::string& dk) -> Status {
    return run_on(target, [&]() -> Status {
      for (const auto& [ak, kind] : store->akey_names(from, dk)) {
        auto x = store->export_akey(from, dk, ak);
        if (!x) return x.status();
        TESSERA_TRY(store->import_akey(to, dk, ak, *x));
      }
      return Status();
    });
  };
  auto visible = [&](ObjectId oid, const std::string& dk, const std::string& ak) {
    return run_on(target, [&] {
      auto r = store->fetch(oid, dk, ak, ValueKind::single, 0, 0, 0);
      return r && r->exists;
    });
  };
  EXPECT_FALSE(visible(kA, "d0", "s0"));
  ASSERT_TRUE(fill(kA, kB, "d0").is_ok());
  EXPECT_TRUE(visible(kB, "d0", "s0")) << "the merge this guards against no longer happens";

  // Not wanted any more (the map moved while the drop waited): nothing goes.
  auto drop = [&](ObjectId oid, const std::string& dk, std::vector<std::string> aks, bool still) {
    return run_on(target,
                  [&] { return store->drop_keys(oid, dk, aks, [still] { return still; }); });
  };
  EXPECT_EQ(drop(kB, "d0", {}, false), 0u);
  EXPECT_TRUE(visible(kB, "d0", "s0"));
  const uint64_t used = stats().used;
  EXPECT_EQ(drop(kB, "d0", {}, true), big.size());
  EXPECT_EQ(drop(kB, "d1", {"s1"}, true), std::string("dropped").size());
  ASSERT_TRUE(run_on(target, [&] { return store->checkpoint(); }).is_ok());
  EXPECT_LT(stats().used, used) << "the dropped extents are free after the checkpoint";
  ASSERT_TRUE(fill(kA, kB, "d0").is_ok());
  EXPECT_FALSE(visible(kB, "d0", "s0"));
  auto names = [&](ObjectId oid) { return run_on(target, [&] { return store->dkey_names(oid); }); };
  EXPECT_EQ(names(kB), std::vector<std::string>{"d1"});
  close();
  ASSERT_TRUE(open().is_ok());
  EXPECT_EQ(names(kB), std::vector<std::string>{"d1"}) << "after a restart";
  EXPECT_EQ(get_str(kB, "d1", "s0"), "kept");
  EXPECT_FALSE(visible(kB, "d1", "s1"));
  EXPECT_TRUE(visible(kA, "d1", "s1"));
}

INSTANTIATE_TEST_SUITE_P(Backends, CheckTest, ::testing::Values("uring", "aio"),
                         [](const auto& info) { return info.param; });

}  // namespace
