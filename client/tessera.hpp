// The installed C++ API of libtessera (docs/API.md): classes that own the C API's handles
// (tessera/tessera.h) and throw on failure. Header-only over the C functions, so a program
// built with it depends on the C ABI alone, and it includes nothing but tessera.h and the
// standard library (no engine header, no Boost, Cap'n Proto or libfabric).
//
//   auto sys = tessera::sdk::System::connect();          // found as the CLI finds it
//   auto cont = sys.open("tank", "results", true);
//   auto oid = cont.oid(0, 42);
//   cont.put(oid, "dkey", "akey", "bytes");
//   std::string back = cont.get(oid, "dkey", "akey");
//
// Errors: tessera::sdk::Error, holding the negative code (-TESSERA_E*) and the library's
// message. Threads: as the C API's (a System, a Container, an EventQueue and an Event are
// used by one thread at a time; different ones by different threads at once).
#ifndef TESSERA_HPP
#define TESSERA_HPP

#include <tessera/tessera.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tessera::sdk {

// A failed call: code() is the C API's negative code, what() its message.
class Error : public std::runtime_error {
 public:
  Error(int code, const std::string& what) : std::runtime_error(what), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

// Throws the C API's failure as an Error (rc < 0); returns rc otherwise.
inline int check(int rc, const char* call) {
  if (rc < 0) {
    // The library's message names the code first ("not found: container 'x' ...").
    const char* msg = tessera_last_error();
    throw Error(rc, std::string(call) + ": " +
                        (msg != nullptr && *msg != '\0' ? msg : tessera_strerror(rc)));
  }
  return rc;
}

struct Oid {
  uint64_t hi = 0;
  uint64_t lo = 0;
};

enum class Kind { single = TESSERA_SINGLE, array = TESSERA_ARRAY };

// A queue that completes the calls given its events (tessera_eq_*).
class EventQueue {
 public:
  EventQueue() { check(tessera_eq_create(&eq_), "tessera_eq_create"); }
  ~EventQueue() {
    if (eq_ != nullptr) (void)tessera_eq_destroy(eq_);
  }
  EventQueue(const EventQueue&) = delete;
  EventQueue& operator=(const EventQueue&) = delete;

  // Waits up to timeout_us (negative: until one) and returns the completed events, in the
  // order they completed.
  std::vector<tessera_event*> poll(int64_t timeout_us, size_t max = 64) {
    std::vector<tessera_event*> evs(max);
    const int n = check(tessera_eq_poll(eq_, timeout_us, evs.data(), max), "tessera_eq_poll");
    evs.resize(static_cast<size_t>(n));
    return evs;
  }
  size_t inflight() const { return tessera_eq_inflight(eq_); }
  tessera_eq* get() const { return eq_; }

 private:
  tessera_eq* eq_ = nullptr;
};

// One call in flight at a time, completed through its queue; its result (status, epoch,
// out_len) is read once a poll handed it back.
class Event {
 public:
  explicit Event(EventQueue& eq, void* user = nullptr) {
    check(tessera_event_init(&ev_, eq.get(), user), "tessera_event_init");
  }
  ~Event() { (void)tessera_event_fini(&ev_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  tessera_event* get() { return &ev_; }
  int status() const { return ev_.status; }
  uint64_t epoch() const { return ev_.epoch; }
  size_t out_len() const { return ev_.out_len; }
  std::string error() const { return tessera_event_error(&ev_); }
  // Throws the completed call's failure.
  void check_done() const {
    if (ev_.status < 0) throw Error(ev_.status, error());
  }

 private:
  tessera_event ev_{};
};

class Transaction;

// An open container handle (tessera_cont_*). Calls given an Event start and return at once;
// their buffers must outlive the call's completion.
class Container {
 public:
  Container(Container&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
  Container& operator=(Container&& o) noexcept {
    std::swap(c_, o.c_);
    return *this;
  }
  ~Container() {
    if (c_ != nullptr) (void)tessera_cont_close(c_);
  }

  // An object id of class `oclass` ("": the container's default) from the application's bits.
  Oid oid(uint32_t hi, uint64_t lo, const std::string& oclass = "") const {
    Oid o;
    check(tessera_cont_oid(c_, hi, lo, oclass.c_str(), &o.hi, &o.lo), "tessera_cont_oid");
    return o;
  }

  // Stores `value` (a single value, or array bytes at `offset`); returns its epoch.
  uint64_t put(Oid o, const std::string& dkey, const std::string& akey, std::string_view value,
               Kind kind = Kind::single, uint64_t offset = 0, int cond = TESSERA_COND_NONE) {
    uint64_t epoch = 0;
    check(tessera_cont_update(c_, o.hi, o.lo, dkey.c_str(), akey.c_str(), static_cast<int>(kind),
                              offset, value.data(), value.size(), cond, &epoch, nullptr),
          "tessera_cont_update");
    return epoch;
  }
  void put(Oid o, const std::string& dkey, const std::string& akey, std::string_view value,
           Event& ev, Kind kind = Kind::single, uint64_t offset = 0) {
    check(tessera_cont_update(c_, o.hi, o.lo, dkey.c_str(), akey.c_str(), static_cast<int>(kind),
                              offset, value.data(), value.size(), TESSERA_COND_NONE, nullptr,
                              ev.get()),
          "tessera_cont_update");
  }

  // Reads a value (the newest, or the one at `epoch`); an array's `length` bytes from
  // `offset` (0: up to its end). The buffer grows to what the value needs.
  std::string get(Oid o, const std::string& dkey, const std::string& akey, Kind kind = Kind::single,
                  uint64_t offset = 0, uint64_t length = 0, uint64_t epoch = 0) {
    return read_grown(length != 0 ? length : 4096, "tessera_cont_fetch",
                      [&](char* buf, size_t len, size_t* got) {
                        return tessera_cont_fetch(c_, o.hi, o.lo, dkey.c_str(), akey.c_str(),
                                                  static_cast<int>(kind), offset, length, epoch,
                                                  buf, len, got, nullptr);
                      });
  }
  // Into the caller's buffer, through `ev` (its out_len: the bytes read).
  void get(Oid o, const std::string& dkey, const std::string& akey, void* buf, size_t len,
           Event& ev, Kind kind = Kind::single, uint64_t offset = 0) {
    check(tessera_cont_fetch(c_, o.hi, o.lo, dkey.c_str(), akey.c_str(), static_cast<int>(kind),
                             offset, kind == Kind::array ? len : 0, 0, buf, len, nullptr, ev.get()),
          "tessera_cont_fetch");
  }

  // dkey "": the whole object; akey "": the whole dkey.
  void punch(Oid o, const std::string& dkey = "", const std::string& akey = "") {
    check(tessera_cont_punch(c_, o.hi, o.lo, dkey.c_str(), akey.c_str(), nullptr),
          "tessera_cont_punch");
  }

  // Every dkey of an object, page by page under the hood.
  std::vector<std::string> dkeys(Oid o, uint64_t epoch = 0) {
    return keys([&](tessera_anchor* a, uint32_t* n, size_t* lens, char* buf, size_t len) {
      return tessera_cont_list_dkeys(c_, o.hi, o.lo, epoch, a, n, lens, buf, len, nullptr);
    });
  }

  // The container as a key-value map (one object of its default class).
  void kv_put(const std::string& key, std::string_view value) {
    check(tessera_kv_put(c_, key.c_str(), value.data(), value.size(), nullptr), "tessera_kv_put");
  }
  std::string kv_get(const std::string& key) {
    return read_grown(4096, "tessera_kv_get", [&](char* buf, size_t len, size_t* got) {
      return tessera_kv_get(c_, key.c_str(), buf, len, got, nullptr);
    });
  }
  void kv_remove(const std::string& key) {
    check(tessera_kv_remove(c_, key.c_str(), nullptr), "tessera_kv_remove");
  }
  std::vector<std::string> kv_keys() {
    return keys([&](tessera_anchor* a, uint32_t* n, size_t* lens, char* buf, size_t len) {
      return tessera_kv_list(c_, a, n, lens, buf, len, nullptr);
    });
  }

  tessera_cont* get() const { return c_; }

 private:
  friend class System;
  explicit Container(tessera_cont* c) : c_(c) {}

  // read(buf, len, &got) into a buffer that grows to what the value needs (-TESSERA_ERANGE
  // says how much).
  template <typename Read>
  static std::string read_grown(size_t first, const char* call, Read read) {
    std::string buf(first, '\0');
    for (;;) {
      size_t got = 0;
      const int rc = read(buf.data(), buf.size(), &got);
      if (rc == -TESSERA_ERANGE && got > buf.size()) {
        buf.resize(got);
        continue;
      }
      check(rc, call);
      buf.resize(got);
      return buf;
    }
  }

  template <typename Page>
  static std::vector<std::string> keys(Page page) {
    std::vector<std::string> out;
    tessera_anchor a = TESSERA_ANCHOR_INIT;
    std::vector<size_t> lens(64);
    std::string buf(64 * 1024, '\0');
    while (a.eof == 0) {
      uint32_t n = static_cast<uint32_t>(lens.size());
      const int rc = page(&a, &n, lens.data(), buf.data(), buf.size());
      if (rc == -TESSERA_ERANGE) {
        buf.resize(lens[0] + buf.size());
        continue;
      }
      check(rc, "a listing");
      size_t at = 0;
      for (uint32_t i = 0; i < n; ++i) {
        out.emplace_back(buf.data() + at, lens[i]);
        at += lens[i];
      }
    }
    return out;
  }

  tessera_cont* c_ = nullptr;
};

// A transaction on a container: its changes apply at commit(), all or none; a commit that
// throws with code -TESSERA_ERESTART means run the whole transaction again.
class Transaction {
 public:
  explicit Transaction(Container& c, uint64_t snapshot_epoch = 0) {
    check(tessera_tx_open(c.get(), snapshot_epoch, &tx_), "tessera_tx_open");
  }
  ~Transaction() { tessera_tx_close(tx_); }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  void put(Oid o, const std::string& dkey, const std::string& akey, std::string_view value,
           Kind kind = Kind::single, uint64_t offset = 0) {
    check(tessera_tx_update(tx_, o.hi, o.lo, dkey.c_str(), akey.c_str(), static_cast<int>(kind),
                            offset, value.data(), value.size(), TESSERA_COND_NONE),
          "tessera_tx_update");
  }
  void punch(Oid o, const std::string& dkey = "", const std::string& akey = "") {
    check(tessera_tx_punch(tx_, o.hi, o.lo, dkey.c_str(), akey.c_str()), "tessera_tx_punch");
  }
  uint64_t commit() {
    uint64_t epoch = 0;
    check(tessera_tx_commit(tx_, &epoch), "tessera_tx_commit");
    return epoch;
  }

 private:
  tessera_tx* tx_ = nullptr;
};

// A connection to a system: administration and container handles.
class System {
 public:
  // "": found as the tessera CLI finds it ($TESSERA_MGMT, $TESSERA_SYSTEM,
  // ~/.tessera/system.json); else a system file or directory, or "host:port".
  static System connect(const std::string& system = "") {
    tessera_client* c = nullptr;
    check(tessera_connect_system(system.c_str(), &c), "tessera_connect_system");
    return System(c);
  }
  System(System&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
  System& operator=(System&& o) noexcept {
    std::swap(c_, o.c_);
    return *this;
  }
  ~System() {
    if (c_ != nullptr) tessera_disconnect(c_);
  }

  Container open(const std::string& pool, const std::string& cont, bool write) {
    tessera_cont* h = nullptr;
    check(tessera_cont_open(c_, pool.c_str(), cont.c_str(), write ? 1 : 0, &h),
          "tessera_cont_open");
    return Container(h);
  }

  tessera_pool_info pool_create(const std::string& label, uint64_t target_bytes) {
    tessera_pool_info info{};
    check(tessera_pool_create(c_, label.c_str(), target_bytes, &info), "tessera_pool_create");
    return info;
  }
  void pool_destroy(const std::string& pool, int flags = 0) {
    check(tessera_pool_destroy(c_, pool.c_str(), flags), "tessera_pool_destroy");
  }
  tessera_pool_info pool_query(const std::string& pool) {
    tessera_pool_info info{};
    check(tessera_pool_query(c_, pool.c_str(), &info), "tessera_pool_query");
    return info;
  }
  // props: "name=value,..." as the CLI's --property takes them (oclass, rf, type, ...).
  tessera_cont_info cont_create(const std::string& pool, const std::string& label,
                                const std::string& props = "") {
    tessera_cont_info info{};
    check(tessera_cont_create(c_, pool.c_str(), label.c_str(), props.c_str(), &info),
          "tessera_cont_create");
    return info;
  }
  void cont_destroy(const std::string& pool, const std::string& cont, int flags = 0) {
    check(tessera_cont_destroy(c_, pool.c_str(), cont.c_str(), flags), "tessera_cont_destroy");
  }
  // props: "name=value,...": label, or status=healthy (clears UNCLEAN after a rebuild).
  void cont_set_prop(const std::string& pool, const std::string& cont, const std::string& props) {
    check(tessera_cont_set_prop(c_, pool.c_str(), cont.c_str(), props.c_str()),
          "tessera_cont_set_prop");
  }
  tessera_cont_info cont_query(const std::string& pool, const std::string& cont) {
    tessera_cont_info info{};
    check(tessera_cont_query(c_, pool.c_str(), cont.c_str(), &info), "tessera_cont_query");
    return info;
  }
  uint64_t snap_create(const std::string& pool, const std::string& cont,
                       const std::string& name = "") {
    uint64_t epoch = 0;
    check(tessera_snap_create(c_, pool.c_str(), cont.c_str(), name.c_str(), &epoch),
          "tessera_snap_create");
    return epoch;
  }

  tessera_client* get() const { return c_; }

 private:
  explicit System(tessera_client* c) : c_(c) {}
  tessera_client* c_ = nullptr;
};

inline std::string version() {
  return tessera_version();
}

}  // namespace tessera::sdk

#endif  // TESSERA_HPP
