#include "net/fabric.hpp"

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <boost/fiber/operations.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <list>
#include <string>
#include <vector>

#include "core/env.hpp"
#include "core/log.hpp"
#include "net/fabric_ops.hpp"
#include "net/reassembly.hpp"

namespace tessera::net {
namespace {

constexpr uint32_t kFiVersion = FI_VERSION(1, 17);

// What every endpoint asks of `provider` (owned by the caller: fi_freeinfo).
fi_info* endpoint_hints(const std::string& provider) {
  fi_info* hints = fi_allocinfo();
  if (hints == nullptr) return nullptr;
  hints->ep_attr->type = FI_EP_RDM;
  hints->caps = FI_MSG;
  hints->mode = FI_CONTEXT | FI_CONTEXT2;
  hints->domain_attr->threading = FI_THREAD_DOMAIN;
  hints->domain_attr->mr_mode = FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
  hints->fabric_attr->prov_name = strdup(provider.c_str());
  return hints;
}

std::string fi_err(int rc) {
  return fmt::format("{} ({})", fi_strerror(-rc), rc);
}

// Peers in the address vector at most (Impl::resolve): every target of a large system, and
// its clients, with room to spare.
constexpr size_t kMaxPeers = 65536;

// shm endpoints are regions in /dev/shm that a killed process never removes. The provider names
// them after the pid, so a later process with the same pid (pids wrap quickly where pid_max is
// 32768) failed to open its endpoint ("Device or resource busy"), and the regions piled up in
// memory. Tessera names its regions "tessera_<pid>_<random>" and removes those of processes
// that no longer exist.
constexpr const char* kShmPrefix = "tessera_";

std::string shm_name() {
  return fmt::format("{}{}_{:016x}", kShmPrefix, ::getpid(), RealEnv::instance().random());
}

void sweep_dead_shm_regions() {
  DIR* d = ::opendir("/dev/shm");
  if (d == nullptr) return;
  const size_t plen = std::strlen(kShmPrefix);
  while (dirent* e = ::readdir(d)) {
    if (std::strncmp(e->d_name, kShmPrefix, plen) != 0) continue;
    char* end = nullptr;
    long pid = std::strtol(e->d_name + plen, &end, 10);
    if (pid <= 0 || end == nullptr || *end != '_') continue;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      std::string path = std::string("/dev/shm/") + e->d_name;
      if (::unlink(path.c_str()) == 0) log::debug("removed {} (its process is gone)", path);
    }
  }
  ::closedir(d);
}
// Logs at a bounded rate (the provider can report a burst of errors when a peer dies).
template <typename... Args>
void warn_limited(log::RateLimit& limit, fmt::format_string<Args...> f, Args&&... args) {
  if (uint64_t skipped = 0; limit.allow(&skipped)) {
    log::warn("{} ({} more not shown)", fmt::format(f, std::forward<Args>(args)...), skipped);
  }
}

static_assert(sizeof(OpBase::ctx) == sizeof(fi_context2) && offsetof(OpBase, ctx) == 0,
              "OpBase::ctx must have fi_context2's layout");
}  // namespace

struct FabricEndpoint::Impl {
  FabricOptions opts;
  DeliverFn deliver;
  fi_info* info = nullptr;
  fid_fabric* fabric = nullptr;
  fid_domain* domain = nullptr;
  fid_cq* cq = nullptr;
  fid_av* av = nullptr;
  fid_ep* ep = nullptr;
  bool can_wait_fd = false;
  size_t iov_limit = 1;
  uint64_t sender_id = 0;
  uint64_t next_msg_id = 1;
  std::unique_ptr<RecvSlots> recvs;
  SendList sends;
  FabricStats* stats = nullptr;  // the endpoint's
  // The address vector: every peer address sent to, with when it was last used (a counter).
  // Bounded: replies go to addresses that messages name, so a stream of made-up addresses must
  // not grow it without end; past kMaxPeers the least recently used entry is removed.
  struct Peer {
    fi_addr_t addr = FI_ADDR_NOTAVAIL;
    uint64_t used = 0;
  };
  std::unordered_map<std::string, Peer> peers;
  uint64_t peer_clock = 0;
  std::unique_ptr<Reassembler> reassembly;
  uint64_t reassembly_counted = 0;  // of its drops, those already in the endpoint's stats

  Trust trust() const { return Trust{opts.key.get(), opts.trust_unauthenticated}; }

  ~Impl() {
    // Closing the endpoint ends every operation it holds; `sends` and `recvs` are freed after.
    if (ep) fi_close(&ep->fid);
    if (av) fi_close(&av->fid);
    if (cq) fi_close(&cq->fid);
    if (domain) fi_close(&domain->fid);
    if (fabric) fi_close(&fabric->fid);
    if (info) fi_freeinfo(info);
  }

  // Posts `s`, or keeps it for the next poll if the provider's receive queue is full.
  Status post_recv(RecvSlot* s) {
    ssize_t rc = fi_recv(ep, s->buf.data(), s->buf.capacity(), nullptr, FI_ADDR_UNSPEC, s->ctx);
    if (rc == 0) return Status();
    if (rc == -FI_EAGAIN) {
      recvs->defer(s);
      return Status();
    }
    // rxm may have matched the posting to a message it then failed to fetch (a rendezvous
    // from a dead peer): the posting is spent, and the context may still be reported.
    retire(s);
    return Status(Errc::io_error, "fi_recv: " + fi_err(static_cast<int>(rc)));
  }

  // `s` failed: retired (fabric_ops.hpp), a fresh slot posted at the next poll.
  void retire(RecvSlot* s) {
    if (!recvs->retire(s, std::chrono::steady_clock::now())) return;
    recvs->defer(recvs->add());
    note_failed_post();
  }

  // rxm (libfabric 1.17) never gives back the receive-queue entry of a posting it failed (a
  // large message from a peer that died), nor the buffer that carried it: each is lost for the
  // endpoint's life, and once the queue's entries are gone every fi_recv says "try again".
  // Closing and reopening the endpoint to get them back crashed inside the provider. So the
  // endpoint counts them and warns as they add up (FabricStats::failed_posts), and says plainly
  // when it can no longer receive (FabricStats::deaf): that process must be restarted.
  void note_failed_post() {
    const uint64_t lost = ++stats->failed_posts, entries = stats->receive_entries;
    for (uint64_t pct : {50, 75, 90}) {
      if (lost == entries * pct / 100) {
        log::error(
            "fabric endpoint: {} of the provider's {} receive entries are lost to failed "
            "receives ({}%); when all are, it stops receiving: restart the process",
            lost, entries, pct);
      }
    }
  }

  void post_deferred() {
    for (RecvSlot* s : recvs->take_deferred()) {
      Status st = post_recv(s);
      if (!st.is_ok()) {
        ++stats->receive_errors;
        static log::RateLimit limit(5);
        warn_limited(limit, "posting a receive buffer: {}", st.to_string());
      }
    }
    if (recvs->posted() == 0 && recvs->has_deferred()) {
      stats->deaf = true;
      static log::RateLimit limit(1);
      if (uint64_t skipped = 0; limit.allow(&skipped)) {
        log::error(
            "fabric endpoint: no receive buffer can be posted (the provider's {} receive "
            "entries: {} lost to failed receives); it hears nothing: restart the process",
            stats->receive_entries, stats->failed_posts);
      }
    }
  }

  // Creates, binds and enables `ep` from `info` and posts the receive buffers; returns the
  // endpoint's address.
  Result<std::string> open_ep(fi_info* info) {
    int rc = 0;
    if ((rc = fi_endpoint(domain, info, &ep, nullptr)) != 0) {
      return Status(Errc::io_error, "fi_endpoint: " + fi_err(rc));
    }
    if (opts.provider == "shm") {
      std::string name = shm_name();
      if ((rc = fi_setname(&ep->fid, name.data(), name.size() + 1)) != 0) {
        return Status(Errc::io_error, "fi_setname: " + fi_err(rc));
      }
    }
    if ((rc = fi_ep_bind(ep, &cq->fid, FI_TRANSMIT | FI_RECV)) != 0 ||
        (rc = fi_ep_bind(ep, &av->fid, 0)) != 0 || (rc = fi_enable(ep)) != 0) {
      return Status(Errc::io_error, "endpoint bind/enable: " + fi_err(rc));
    }
    char name[256];
    size_t len = sizeof(name);
    if ((rc = fi_getname(&ep->fid, name, &len)) != 0) {
      return Status(Errc::io_error, "fi_getname: " + fi_err(rc));
    }
    for (size_t i = 0; i < opts.recv_slots; ++i) TESSERA_TRY(post_recv(recvs->add()));
    return std::string(name, len);
  }

  Result<fi_addr_t> resolve(const std::string& peer) {
    auto it = peers.find(peer);
    if (it != peers.end()) {
      it->second.used = ++peer_clock;
      return it->second.addr;
    }
    if (peers.size() >= kMaxPeers) {
      auto oldest = std::min_element(peers.begin(), peers.end(), [](const auto& a, const auto& b) {
        return a.second.used < b.second.used;
      });
      // A send still in flight to it completes with an error (logged), as to a dead peer.
      (void)fi_av_remove(av, &oldest->second.addr, 1, 0);
      peers.erase(oldest);
    }
    fi_addr_t a = FI_ADDR_NOTAVAIL;
    int rc = fi_av_insert(av, peer.data(), 1, &a, 0, nullptr);
    if (rc != 1) return Status(Errc::unreachable, "fi_av_insert failed for a peer address");
    peers.emplace(peer, Peer{a, ++peer_clock});
    return a;
  }
};

void warm_providers(const std::string& provider) {
  fi_info* hints = endpoint_hints(provider);
  if (hints == nullptr) return;
  fi_info* info = nullptr;
  if (fi_getinfo(kFiVersion, nullptr, nullptr, 0, hints, &info) == 0) fi_freeinfo(info);
  fi_freeinfo(hints);
}

FabricEndpoint::FabricEndpoint(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  impl_->stats = &stats_;
}

FabricEndpoint::~FabricEndpoint() = default;

Result<std::unique_ptr<FabricEndpoint>> FabricEndpoint::open(const FabricOptions& opts,
                                                             DeliverFn deliver) {
  auto impl = std::make_unique<Impl>();
  impl->opts = opts;
  impl->deliver = std::move(deliver);
  impl->sender_id = RealEnv::instance().random();
  impl->reassembly = std::make_unique<Reassembler>(opts.max_message);
  impl->recvs = std::make_unique<RecvSlots>(opts.max_frame);

  fi_info* hints = endpoint_hints(opts.provider);
  if (hints == nullptr) return Status(Errc::internal, "fi_allocinfo failed");
  bool is_shm = opts.provider == "shm";
  const char* node = is_shm || opts.node.empty() ? nullptr : opts.node.c_str();
  uint64_t flags = node != nullptr ? FI_SOURCE : 0;
  int rc = fi_getinfo(kFiVersion, node, node != nullptr ? "0" : nullptr, flags, hints, &impl->info);
  fi_freeinfo(hints);
  if (rc != 0 || impl->info == nullptr) {
    return Status(Errc::unsupported, fmt::format("libfabric provider '{}' is not usable here: {}",
                                                 opts.provider, fi_err(rc)));
  }
  fi_info* info = impl->info;
  impl->iov_limit = info->tx_attr->iov_limit;
  if ((rc = fi_fabric(info->fabric_attr, &impl->fabric, nullptr)) != 0) {
    return Status(Errc::io_error, "fi_fabric: " + fi_err(rc));
  }
  if ((rc = fi_domain(impl->fabric, info, &impl->domain, nullptr)) != 0) {
    return Status(Errc::io_error, "fi_domain: " + fi_err(rc));
  }
  fi_cq_attr cq_attr{};
  cq_attr.size = 4096;
  cq_attr.format = FI_CQ_FORMAT_MSG;
  cq_attr.wait_obj = is_shm ? FI_WAIT_NONE : FI_WAIT_FD;
  if ((rc = fi_cq_open(impl->domain, &cq_attr, &impl->cq, nullptr)) != 0) {
    // A provider that cannot hand out a wait fd is still usable with adaptive back-off.
    cq_attr.wait_obj = FI_WAIT_NONE;
    if ((rc = fi_cq_open(impl->domain, &cq_attr, &impl->cq, nullptr)) != 0) {
      return Status(Errc::io_error, "fi_cq_open: " + fi_err(rc));
    }
  }
  int fd = -1;
  if (cq_attr.wait_obj == FI_WAIT_FD && fi_control(&impl->cq->fid, FI_GETWAIT, &fd) == 0) {
    impl->can_wait_fd = true;
  } else {
    fd = -1;
  }
  fi_av_attr av_attr{};
  av_attr.type = FI_AV_MAP;
  if ((rc = fi_av_open(impl->domain, &av_attr, &impl->av, nullptr)) != 0) {
    return Status(Errc::io_error, "fi_av_open: " + fi_err(rc));
  }
  if (opts.rx_queue > 0 && opts.provider.find("ofi_rxm") != std::string::npos) {
    info->rx_attr->size = opts.rx_queue;  // rxm accepts up to 65,536
  }
  if (is_shm) sweep_dead_shm_regions();
  std::unique_ptr<FabricEndpoint> ep(new FabricEndpoint(std::move(impl)));  // stats for open_ep
  ep->stats_.receive_entries = info->rx_attr->size;
  TESSERA_ASSIGN_OR_RETURN(ep->addr_, ep->impl_->open_ep(info));
  ep->provider_ = ep->impl_->info->fabric_attr->prov_name;
  ep->wait_fd_ = fd;
  log::debug("fabric endpoint {} on {} (wait fd {})", ep->printable(ep->addr_), ep->provider_, fd);
  return ep;
}

std::string FabricEndpoint::printable(const std::string& raw) const {
  char buf[256];
  size_t len = sizeof(buf);
  const char* s = fi_av_straddr(impl_->av, raw.data(), buf, &len);
  return s != nullptr ? std::string(s) : std::string("?");
}

bool FabricEndpoint::prepare_to_sleep() {
  // Receive buffers waiting for room in the provider's queue: no completion would wake us
  // (unless the room is gone for good: see note_failed_post).
  if (impl_->recvs->has_deferred() && !stats_.deaf) return false;
  if (!impl_->can_wait_fd) return true;
  fid* f = &impl_->cq->fid;
  return fi_trywait(impl_->fabric, &f, 1) == FI_SUCCESS;
}

namespace {
// Posts one frame, retrying while the provider's queues are full. Runs in a fiber: it yields
// so the target's reactor can progress the CQ and free send slots.
// The process behind a Tessera shm address ("tessera_<pid>_..."), or 0.
pid_t shm_peer_pid(const FabricEndpoint::Impl& im, const std::string& peer) {
  if (im.opts.provider != "shm" || peer.rfind(kShmPrefix, 0) != 0) return 0;
  return static_cast<pid_t>(std::strtol(peer.c_str() + std::strlen(kShmPrefix), nullptr, 10));
}

// peer_pid (shm only): libfabric 1.17's shm provider takes a spinlock inside the peer's region
// to send; a peer killed while holding it leaves it held, and fi_sendv would spin for ever.
// So a send to a shm peer whose process is gone fails at once instead (kill(pid, 0) does not
// block). A peer that dies between this check and the send can still wedge the sender.
Status post_frame(FabricEndpoint::Impl& im, fi_addr_t dest, std::unique_ptr<SendOp> op,
                  uint64_t& retries, pid_t peer_pid) {
  iovec iov[2];
  size_t n = 0;
  iov[n++] = {op->head.data(), op->head.size()};
  if (op->bulk_len > 0) {
    iov[n++] = {op->bulk->data() + op->bulk_off, op->bulk_len};
  }
  if (n > im.iov_limit) {
    // Provider takes a single buffer: gather into the head buffer.
    Buffer joined(op->head.size() + op->bulk_len);
    std::memcpy(joined.data(), op->head.data(), op->head.size());
    std::memcpy(joined.data() + op->head.size(), op->bulk->data() + op->bulk_off, op->bulk_len);
    op->head = std::move(joined);
    op->bulk_len = 0;
    iov[0] = {op->head.data(), op->head.size()};
    n = 1;
  }
  op->kind = OpKind::send;
  std::chrono::steady_clock::time_point give_up{};
  while (true) {
    if (peer_pid > 0 && ::kill(peer_pid, 0) != 0 && errno == ESRCH) {
      return Status(Errc::unreachable, fmt::format("shm peer process {} is gone", peer_pid));
    }
    ssize_t rc = fi_sendv(im.ep, iov, nullptr, n, dest, op->ctx);
    if (rc == 0) {
      im.sends.add(std::move(op));  // until its completion
      return Status();
    }
    if (rc != -FI_EAGAIN) {
      return Status(Errc::unreachable, "fi_sendv: " + fi_err(static_cast<int>(rc)));
    }
    ++retries;
    auto now = std::chrono::steady_clock::now();
    if (give_up == std::chrono::steady_clock::time_point{}) {
      give_up = now + im.opts.send_stall;
    } else if (now >= give_up) {
      return Status(Errc::unreachable,
                    fmt::format("the fabric refused a send for {} ms (peer gone?)",
                                im.opts.send_stall.count()));
    }
    boost::this_fiber::yield();
  }
}
}  // namespace

Status FabricEndpoint::send(const std::string& peer, Message&& m) {
  Impl& im = *impl_;
  auto dest = im.resolve(peer);
  if (!dest) return dest.status();
  if (m.bulk.size() > im.opts.max_message) {
    return Status(Errc::too_big, fmt::format("message bulk of {} bytes exceeds the {} byte limit",
                                             m.bulk.size(), im.opts.max_message));
  }
  uint64_t msg_id = im.next_msg_id++;
  uint64_t total = m.bulk.size();
  auto hdr = encode_header(m, im.sender_id, msg_id, total, im.opts.key.get());
  if (!hdr) return hdr.status();
  auto bulk = std::make_shared<Buffer>(std::move(m.bulk));
  size_t room = im.opts.max_frame - hdr->bytes.size();
  auto first = std::make_unique<SendOp>();
  first->head = std::move(hdr->bytes);
  first->bulk = bulk;
  first->bulk_len = std::min<uint64_t>(room, total);
  set_chunk(first->head, total <= room ? FrameKind::whole : FrameKind::first, 0,
            static_cast<uint32_t>(first->bulk_len));
  uint64_t off = first->bulk_len;
  const pid_t peer_pid = shm_peer_pid(im, peer);
  TESSERA_TRY(post_frame(im, *dest, std::move(first), stats_.send_retries, peer_pid));
  ++stats_.frames_out;
  size_t chunk = im.opts.max_frame - 4096;
  while (off < total) {
    auto op = std::make_unique<SendOp>();
    uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(chunk, total - off));
    op->head = make_cont_header(im.sender_id, msg_id, off, len);
    op->bulk = bulk;
    op->bulk_off = off;
    op->bulk_len = len;
    TESSERA_TRY(post_frame(im, *dest, std::move(op), stats_.send_retries, peer_pid));
    ++stats_.frames_out;
    off += len;
  }
  return Status();
}

Status FabricEndpoint::send_raw(const std::string& peer, Buffer bytes) {
  auto dest = impl_->resolve(peer);
  if (!dest) return dest.status();
  auto op = std::make_unique<SendOp>();
  op->head = std::move(bytes);
  return post_frame(*impl_, *dest, std::move(op), stats_.send_retries, shm_peer_pid(*impl_, peer));
}

namespace {
using Impl = FabricEndpoint::Impl;

// Whether `slot` was retired (fabric_ops.hpp): its completion, success or error, is counted and
// otherwise ignored.
bool retired_completion(Impl& im, FabricStats& stats, RecvSlot* slot) {
  if (!slot->retired) return false;
  ++stats.stale_completions;
  im.recvs->heard(slot, std::chrono::steady_clock::now());
  return true;
}

// An error completion: its context is used only once it is found among ours (fabric_ops.hpp).
void on_error(Impl& im, FabricStats& stats, const fi_cq_err_entry& err) {
  static log::RateLimit recv_limit(5), send_limit(5), other_limit(5);
  if (RecvSlot* slot = im.recvs->find(err.op_context)) {
    if (retired_completion(im, stats, slot)) return;
    ++stats.dropped;
    ++stats.receive_errors;
    warn_limited(recv_limit, "fabric receive failed ({}): frame dropped", fi_strerror(err.err));
    im.retire(slot);
  } else if (SendOp* op = im.sends.find(err.op_context)) {
    warn_limited(send_limit, "fabric send failed: {}", fi_strerror(err.err));
    im.sends.take(op);
  } else {
    ++stats.foreign_errors;
    warn_limited(other_limit, "fabric error not tied to a message of this endpoint: {}",
                 fi_strerror(err.err));
  }
}

void on_receive(Impl& im, FabricStats& stats, RecvSlot* slot, size_t len) {
  ++stats.frames_in;
  std::span<const uint8_t> bytes(slot->buf.data(), len);
  auto fr = decode_frame(bytes, im.opts.max_message, im.trust());
  if (!fr) {
    ++stats.dropped;
    ++stats.malformed;
    static log::RateLimit limit(5);
    if (uint64_t skipped = 0; limit.allow(&skipped)) {
      log::error("dropping malformed frame ({} bytes): {} ({} more not shown)", len,
                 fr.status().to_string(), skipped);
    }
  } else if (fr->pre.kind == FrameKind::whole) {
    if (fr->bulk.size() >= im.opts.max_frame / 4 && fr->bulk_offset_in_frame % 4096 == 0) {
      // Hand the aligned receive buffer to the message and post a fresh one: no copy.
      size_t off = fr->bulk_offset_in_frame;
      size_t blen = fr->bulk.size();
      fr->msg.bulk = std::move(slot->buf);
      fr->msg.bulk.truncate(off + blen);
      fr->msg.bulk.advance(off);
      slot->buf = Buffer(im.opts.max_frame);
    } else {
      fr->msg.bulk = Buffer(fr->bulk.data(), fr->bulk.size());
    }
    ++stats.messages_in;
    im.deliver(std::move(fr->msg));
  } else if (auto whole = im.reassembly->add(*fr)) {
    ++stats.messages_in;
    im.deliver(std::move(*whole));
  }
  Status st = im.post_recv(slot);
  if (!st.is_ok()) {
    ++stats.receive_errors;
    static log::RateLimit limit(5);
    warn_limited(limit, "re-posting a receive buffer: {}", st.to_string());
  }
}
}  // namespace

size_t FabricEndpoint::poll() {
  Impl& im = *impl_;
  size_t handled = 0;
  if (im.recvs->has_deferred()) im.post_deferred();
  fi_cq_msg_entry entries[32];
  for (int round = 0; round < 8; ++round) {
    ssize_t n = fi_cq_read(im.cq, entries, 32);
    if (n == -FI_EAGAIN) break;
    if (n == -FI_EAVAIL) {
      fi_cq_err_entry err{};
      if (fi_cq_readerr(im.cq, &err, 0) <= 0) break;
      ++handled;
      on_error(im, stats_, err);
      continue;
    }
    if (n < 0) {
      log::error("fi_cq_read: {}", fi_err(static_cast<int>(n)));
      break;
    }
    for (ssize_t i = 0; i < n; ++i) {
      ++handled;
      auto* op = static_cast<OpBase*>(entries[i].op_context);  // a success names one of ours
      if (op->kind == OpKind::send) {
        im.sends.take(static_cast<SendOp*>(op));
        continue;
      }
      auto* slot = static_cast<RecvSlot*>(op);
      if (!retired_completion(im, stats_, slot)) on_receive(im, stats_, slot, entries[i].len);
    }
    if (n < 32) break;
  }
  // Forget messages whose chunks stopped arriving (sender died mid-message), and the buffers
  // of failed receives once they are quiet.
  if (im.reassembly->partials() > 0 || im.recvs->retired_buffers() > 0) {
    auto now = std::chrono::steady_clock::now();
    im.reassembly->expire(now, std::chrono::seconds(30));
    im.recvs->trim(now);
  }
  stats_.dropped += im.reassembly->dropped() - im.reassembly_counted;
  im.reassembly_counted = im.reassembly->dropped();
  return handled;
}

}  // namespace tessera::net
