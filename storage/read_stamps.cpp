#include "storage/read_stamps.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

namespace tessera::storage {

// oid (16 bytes) | dkey length (4) | dkey | akey: the stamps under an object, or under a dkey,
// are a range of the ordered map.
std::string ReadStamps::key(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                            bool prefix) {
  std::string k(16, '\0');
  std::memcpy(k.data(), &oid.hi, 8);
  std::memcpy(k.data() + 8, &oid.lo, 8);
  if (prefix && dkey.empty()) return k;
  const uint32_t dl = static_cast<uint32_t>(dkey.size());
  k.append(reinterpret_cast<const char*>(&dl), 4);
  k.append(dkey);
  if (!prefix) k.append(akey);
  return k;
}

void ReadStamps::note(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                      uint64_t epoch, uint64_t owner) {
  if (epoch <= floor_) return;  // the floor covers it already
  Stamp& s = stamps_[key(oid, dkey, akey, false)];
  if (epoch >= s.epoch) s = Stamp{epoch, owner};
  if (stamps_.size() <= max_) return;
  // Full: forget the older half; the floor covers what is forgotten.
  std::vector<uint64_t> epochs;
  epochs.reserve(stamps_.size());
  for (const auto& [k, v] : stamps_) epochs.push_back(v.epoch);
  auto mid = epochs.begin() + static_cast<long>(epochs.size() / 2);
  std::nth_element(epochs.begin(), mid, epochs.end());
  raise_floor(*mid);
}

void ReadStamps::raise_floor(uint64_t epoch) {
  if (epoch <= floor_) return;
  floor_ = epoch;
  std::erase_if(stamps_, [&](const auto& kv) { return kv.second.epoch <= floor_; });
}

uint64_t ReadStamps::conflict(const ObjectId& oid, std::string_view dkey, std::string_view akey,
                              uint64_t epoch, uint64_t owner) const {
  if (floor_ >= epoch) return floor_;
  if (stamps_.empty()) return 0;
  auto one = [&](const std::string& k) -> uint64_t {
    auto it = stamps_.find(k);
    return it != stamps_.end() && meets(it->second, epoch, owner) ? it->second.epoch : 0;
  };
  // Reads that listed the object's dkeys, or the dkey's akeys, see this change too.
  if (uint64_t e = one(key(oid, {}, {}, false)); e != 0) return e;
  if (dkey.empty() || akey.empty()) {
    // The whole object or dkey: every read under it.
    const std::string p = key(oid, dkey, {}, true);
    for (auto it = stamps_.lower_bound(p);
         it != stamps_.end() && it->first.compare(0, p.size(), p) == 0; ++it) {
      if (meets(it->second, epoch, owner)) return it->second.epoch;
    }
    return 0;
  }
  if (uint64_t e = one(key(oid, dkey, {}, false)); e != 0) return e;
  return one(key(oid, dkey, akey, false));
}

}  // namespace tessera::storage
