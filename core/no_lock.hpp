// NoLock: the BasicLockable that Boost.Fiber condition variables are given on a target.
//
// Every fiber of a target runs on the target's one thread, so waiting on a condition variable
// needs only its wait queue, never a lock.
#pragma once

namespace tessera {

struct NoLock {
  void lock() {}
  void unlock() {}
};

}  // namespace tessera
