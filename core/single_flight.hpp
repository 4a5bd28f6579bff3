// SingleFlight<Key, T>: one fetch per key at a time among the fibers of one target.
//
// Fibers that ask for a key while a fetch of it is running wait for that fetch's result instead
// of fetching again: after a pool map change every request on a target that carries the new
// version asks for the map, and without this each asked the management service on its own (a
// herd of identical requests per target, per change). A waiter may need something newer than
// the running fetch can bring (it left before what the waiter needs existed), so `enough`
// judges a shared result; a waiter it rejects fetches again, itself or by joining the next
// fetch (at most `max_joins` shared results are judged before a waiter fetches on its own).
// Errors are shared too: the waiters of a failed fetch fail with it.
//
// Runs on: one target's fibers only (Boost.Fiber's mutex and condition variable: a waiting fiber
// yields its thread, nothing blocks).
#pragma once

#include <boost/fiber/condition_variable.hpp>
#include <boost/fiber/mutex.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "core/status.hpp"

namespace tessera {

template <typename Key, typename T>
class SingleFlight {
 public:
  Result<T> get(const Key& key, const std::function<Result<T>()>& fetch,
                const std::function<bool(const T&)>& enough, int max_joins = 2) {
    for (int joins = 0; joins < max_joins; ++joins) {
      auto it = flights_.find(key);
      if (it == flights_.end()) break;
      std::shared_ptr<Flight> f = it->second;
      ++joined_;
      {
        std::unique_lock lk(f->mu);
        f->cv.wait(lk, [&] { return f->result.has_value(); });
      }
      if (!f->result->is_ok() || enough(**f->result)) return *f->result;
    }
    auto f = std::make_shared<Flight>();
    flights_[key] = f;  // (replaces a flight that no longer satisfies: its owner still finishes it)
    ++fetched_;
    Result<T> r = fetch();
    if (auto it = flights_.find(key); it != flights_.end() && it->second == f) flights_.erase(it);
    {
      std::lock_guard lk(f->mu);
      f->result.emplace(r);
    }
    f->cv.notify_all();
    return r;
  }

  uint64_t fetched() const { return fetched_; }  // fetches made
  uint64_t joined() const { return joined_; }    // waits on another fiber's fetch

 private:
  struct Flight {
    boost::fibers::mutex mu;
    boost::fibers::condition_variable cv;
    std::optional<Result<T>> result;
  };
  std::unordered_map<Key, std::shared_ptr<Flight>> flights_;
  uint64_t fetched_ = 0;
  uint64_t joined_ = 0;
};

}  // namespace tessera
