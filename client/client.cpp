#include "client/client.hpp"
#include "client/client_impl.hpp"

#include <sys/socket.h>

#include <boost/asio.hpp>
#include <future>
#include <optional>

#include "mgmt/types.hpp"
#include "proto/protocol.hpp"
#include "proto/capnp_util.hpp"
#include "proto/object.capnp.h"
#include "proto/system.capnp.h"
#include "core/actor.hpp"
#include "core/checksum.hpp"
#include "core/log.hpp"
#include "core/target.hpp"
#include "net/fabric.hpp"
#include "net/stream.hpp"
#include "security/authority.hpp"
#include "placement/layout.hpp"
#include "placement/placement.hpp"

namespace tessera {

namespace asio = boost::asio;
using capn::as_data;
using capn::from_data;

Result<SystemInfo> query_system(const std::string& engine, std::chrono::milliseconds timeout) {
  auto ep = net::parse_endpoint(engine);
  if (!ep) return ep.status();
  asio::io_context io;
  asio::ip::tcp::socket sock(io);
  boost::system::error_code ec = asio::error::would_block;
  sock.async_connect(*ep, [&](const boost::system::error_code& e) { ec = e; });
  io.run_for(timeout);
  if (ec == asio::error::would_block) {
    return Status(Errc::timeout,
                  fmt::format("no answer from engine {} within {} ms", engine, timeout.count()));
  }
  if (ec) {
    return Status(Errc::unreachable,
                  fmt::format("cannot reach engine at {}: {} (is tessera-server running?)", engine,
                              ec.message()));
  }
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  Message req;
  req.protocol = proto::kProtoSystem;
  req.method = proto::kSysQuery;
  req.corr = 1;
  TESSERA_TRY(net::write_message(sock, req));
  auto rep = net::read_message(sock, 1u << 20);
  if (!rep) return rep.status();
  if (rep->status != Errc::ok) return Status(rep->status, rep->error);
  SystemInfo out;
  try {
    capn::DecodeScope ds;
    capn::BodyReader br(rep->body);
    auto s = br.root<schema::SystemInfo>();
    out.rank = s.getRank();
    out.provider = s.getProvider();
    out.pid = s.getPid();
    out.version = s.getVersion();
    out.hostname = s.getHostname();
    out.control_addr = s.getControlAddr();
    out.metrics_addr = s.getMetricsAddr();
    out.uptime_ms = s.getUptimeMs();
    out.format_done = s.getFormatDone();
    out.format_total = s.getFormatTotal();
    out.pools_open = s.getPoolsOpen();
    for (auto t : s.getTargets()) {
      TargetInfo ti;
      ti.index = t.getIndex();
      ti.cpu = t.getCpu();
      ti.tid = t.getTid();
      ti.fabric_addr = from_data(t.getFabricAddr());
      ti.backend = t.getBackend();
      ti.storage_path = t.getStoragePath();
      ti.capacity = t.getCapacity();
      ti.used = t.getUsed();
      out.targets.push_back(std::move(ti));
    }
    if (ds.failed()) return Status(Errc::protocol, "malformed system info: " + ds.what());
  } catch (const kj::Exception& e) {
    return Status(Errc::protocol,
                  fmt::format("malformed system info: {}", e.getDescription().cStr()));
  }
  if (out.targets.empty()) return Status(Errc::protocol, "engine reports no targets");
  return out;
}

Result<std::unique_ptr<Client>> Client::start(const ClientOptions& opts,
                                              const std::string& provider, bool loopback) {
  std::unique_ptr<Client> c(new Client());
  c->impl_ = std::make_unique<Impl>();
  Impl& im = *c->impl_;
  im.opts = opts;
  TargetOptions to;
  to.index = 0;
  to.cpu = opts.cpu;
  to.name = "client";
  im.target = std::make_unique<Target>(RealEnv::instance(), to);
  uint32_t rank =
      kClientRankBase | static_cast<uint32_t>(RealEnv::instance().random() & 0x7fffffffu);
  im.rt = std::make_unique<ActorRuntime>(*im.target, rank);
  std::promise<Status> ready;
  auto fut = ready.get_future();
  auto key = security::default_authority().key();
  Status st = im.target->start([&im, &ready, provider, loopback, key] {
    net::FabricOptions fo;
    fo.provider = provider;
    fo.node = loopback ? "127.0.0.1" : "";
    // An administrator's client (it holds the system key) may use engine-internal methods.
    fo.key = key;
    ActorRuntime* rt = im.rt.get();
    auto ep = net::FabricEndpoint::open(fo, [rt](Message&& m) { rt->deliver(std::move(m)); });
    if (!ep) return ready.set_value(ep.status());
    im.ep = std::move(*ep);
    im.target->add_poller(im.ep.get());
    rt->set_transport(im.ep.get());
    ready.set_value(Status());
  });
  if (st.is_ok()) st = fut.get();
  if (!st.is_ok()) return st;
  return c;
}

Result<std::unique_ptr<Client>> Client::connect(const ClientOptions& opts) {
  auto sys = query_system(opts.engine, opts.timeout);
  if (!sys) return sys.status();
  std::string provider = opts.provider.empty() ? sys->provider : opts.provider;
  auto host = net::parse_endpoint(opts.engine);
  auto c = start(opts, provider, host && host->address().is_loopback());
  if (!c) return c.status();
  (*c)->sys_ = std::move(*sys);
  Impl& im = *(*c)->impl_;
  Client* cl = c->get();
  (void)run_on_client(im, [&im, cl] {
    for (auto& t : cl->sys_.targets) {
      im.rt->set_route(cl->sys_.rank, static_cast<uint16_t>(t.index), t.fabric_addr);
      t.fabric_addr_text = im.ep->printable(t.fabric_addr);
    }
  });
  return c;
}

Client::~Client() = default;

const ClientOptions& Client::options() const {
  return impl_->opts;
}

uint32_t Client::target_of(ObjectId oid) const {
  return placement::target_for(oid.hi, oid.lo, static_cast<uint32_t>(sys_.targets.size()));
}

namespace {
template <typename T, typename Decode>
Client::Future<T> call(Client::Impl& im, uint32_t rank, uint32_t target, uint16_t method,
                       Buffer body, Buffer bulk, Decode decode,
                       std::chrono::milliseconds timeout = {}) {
  auto p = std::make_shared<Promise<T>>();
  auto f = p->get_future();
  if (timeout.count() <= 0) timeout = im.opts.timeout;
  im.target->post([&im, p, rank, target, method, body = std::move(body), bulk = std::move(bulk),
                   decode, timeout]() mutable {
    Message m;
    m.dst = ActorAddr{rank, static_cast<uint16_t>(target), proto::kObjectServiceActor};
    m.protocol = proto::kProtoObject;
    m.method = method;
    m.body = std::move(body);
    m.bulk = std::move(bulk);
    auto r = im.rt->ask(std::move(m), timeout);
    if (!r) return p->set_value(r.status());
    if (r->status != Errc::ok) return p->set_value(Status(r->status, r->error));
    try {
      capn::DecodeScope ds;
      auto out = decode(*r);
      if (ds.failed()) return p->set_value(Status(Errc::protocol, "malformed reply: " + ds.what()));
      p->set_value(std::move(out));
    } catch (const kj::Exception& e) {
      p->set_value(
          Status(Errc::protocol, fmt::format("malformed reply: {}", e.getDescription().cStr())));
    }
  });
  return f;
}

void set_oid(schema::ObjId::Builder b, ObjectId oid) {
  b.setHi(oid.hi);
  b.setLo(oid.lo);
}
schema::ValueKind to_schema(ValueKind k) {
  return k == ValueKind::array ? schema::ValueKind::ARRAY : schema::ValueKind::SINGLE;
}
}  // namespace

Result<uint64_t> decode_epoch(Message& m) {
  capn::BodyReader br(m.body);
  return br.root<schema::UpdateRep>().getEpoch();
}

Result<std::pair<uint64_t, uint64_t>> decode_tx_begin(Message& m) {
  capn::BodyReader br(m.body);
  auto rep = br.root<schema::TxBeginRep>();
  return std::make_pair(rep.getEpoch(), rep.getOwner());
}

Result<FetchResult> decode_fetch(Message& m) {
  capn::BodyReader br(m.body);
  auto rep = br.root<schema::FetchRep>();
  if (crc32c(m.bulk.span()) != rep.getCrc()) {
    return Status(Errc::checksum, "fetched data does not match the engine's checksum");
  }
  FetchResult out;
  out.exists = rep.getExists();
  out.size = rep.getSize();
  out.epoch = rep.getEpoch();
  for (auto h : rep.getHoles()) out.holes.emplace_back(h.getOffset(), h.getLength());
  out.data = std::move(m.bulk);
  return out;
}

Result<ListPage> decode_list(Message& m) {
  capn::BodyReader br(m.body);
  auto rep = br.root<schema::ListRep>();
  ListPage page;
  for (auto k : rep.getKeys()) {
    KeyEntry e;
    e.key = from_data(k.getKey());
    e.oid = ObjectId{k.getOid().getHi(), k.getOid().getLo()};
    e.kind = k.getKind() == schema::ValueKind::ARRAY ? ValueKind::array : ValueKind::single;
    e.size = k.getSize();
    e.offset = k.getOffset();
    e.length = k.getLength();
    page.first.push_back(std::move(e));
  }
  if (!rep.getDone()) page.second = from_data(rep.getAnchor());
  return page;
}

void set_ctx(schema::IoCtx::Builder b, const IoCtxValues& c) {
  b.setPool(c.pool);
  b.setMapVersion(c.map_version);
  b.setHandle(c.handle);
  b.setCont(c.cont);
  b.setTxRead(c.tx_read);
}

Buffer update_body(ObjectId oid, std::string_view dkey, std::string_view akey, ValueKind kind,
                   uint64_t offset, uint32_t crc, UpdateFlags flags, const IoCtxValues& ctx) {
  capnp::MallocMessageBuilder b(256);
  auto req = b.initRoot<schema::UpdateReq>();
  set_oid(req.initOid(), oid);
  req.setDkey(as_data(dkey));
  req.setAkey(as_data(akey));
  req.setKind(to_schema(kind));
  req.setOffset(offset);
  req.setCrc(crc);
  req.setCond(static_cast<uint8_t>(flags.cond));
  req.setRsize(flags.rsize);
  set_ctx(req.initCtx(), ctx);
  return capn::to_body(b);
}

Buffer fetch_body(ObjectId oid, std::string_view dkey, std::string_view akey, ValueKind kind,
                  uint64_t offset, uint64_t length, uint64_t epoch, FetchFlags flags,
                  const IoCtxValues& ctx) {
  capnp::MallocMessageBuilder b(256);
  auto req = b.initRoot<schema::FetchReq>();
  set_oid(req.initOid(), oid);
  req.setDkey(as_data(dkey));
  req.setAkey(as_data(akey));
  req.setKind(to_schema(kind));
  req.setOffset(offset);
  req.setLength(length);
  req.setEpoch(epoch);
  req.setMustExist(flags.must_exist);
  req.setRsize(flags.rsize);
  set_ctx(req.initCtx(), ctx);
  return capn::to_body(b);
}

Buffer punch_body(ObjectId oid, std::string_view dkey, std::string_view akey, uint64_t offset,
                  uint64_t length, uint32_t rsize, const IoCtxValues& ctx) {
  capnp::MallocMessageBuilder b(256);
  auto req = b.initRoot<schema::PunchReq>();
  set_oid(req.initOid(), oid);
  req.setDkey(as_data(dkey));
  req.setAkey(as_data(akey));
  req.setOffset(offset);
  req.setLength(length);
  req.setRsize(rsize);
  set_ctx(req.initCtx(), ctx);
  return capn::to_body(b);
}

Buffer list_body(ListScope scope, ObjectId oid, std::string_view dkey, std::string_view akey,
                 std::string_view anchor, uint32_t limit, uint64_t epoch, const IoCtxValues& ctx) {
  capnp::MallocMessageBuilder b(256);
  auto req = b.initRoot<schema::ListReq>();
  set_oid(req.initOid(), oid);
  req.setScope(scope == ListScope::objects ? schema::ListReq::Scope::OBJECTS
               : scope == ListScope::dkeys ? schema::ListReq::Scope::DKEYS
               : scope == ListScope::akeys ? schema::ListReq::Scope::AKEYS
                                           : schema::ListReq::Scope::RECX);
  req.setDkey(as_data(dkey));
  req.setAkey(as_data(akey));
  req.setEpoch(epoch);
  req.setAnchor(as_data(anchor));
  req.setLimit(limit);
  set_ctx(req.initCtx(), ctx);
  return capn::to_body(b);
}

Client::Future<uint64_t> Client::update_async(ObjectId oid, std::string dkey, std::string akey,
                                              ValueKind kind, uint64_t offset, Buffer data,
                                              UpdateFlags flags) {
  uint32_t crc = crc32c(data.span());
  return call<uint64_t>(*impl_, sys_.rank, target_of(oid), proto::kObjUpdate,
                        update_body(oid, dkey, akey, kind, offset, crc, flags), std::move(data),
                        decode_epoch);
}

Client::Future<FetchResult> Client::fetch_async(ObjectId oid, std::string dkey, std::string akey,
                                                ValueKind kind, uint64_t offset, uint64_t length,
                                                uint64_t epoch, FetchFlags flags) {
  return call<FetchResult>(*impl_, sys_.rank, target_of(oid), proto::kObjFetch,
                           fetch_body(oid, dkey, akey, kind, offset, length, epoch, flags), {},
                           decode_fetch);
}

Client::Future<uint64_t> Client::punch_async(ObjectId oid, std::string dkey, std::string akey) {
  return call<uint64_t>(*impl_, sys_.rank, target_of(oid), proto::kObjPunch,
                        punch_body(oid, dkey, akey, 0, 0, 1), {}, decode_epoch);
}

Client::Future<uint64_t> Client::punch_range_async(ObjectId oid, std::string dkey, std::string akey,
                                                   uint64_t offset, uint64_t length,
                                                   uint32_t rsize) {
  if (length == 0) {
    return Future<uint64_t>::ready_with(Status(Errc::invalid_argument, "empty range to punch"));
  }
  return call<uint64_t>(*impl_, sys_.rank, target_of(oid), proto::kObjPunch,
                        punch_body(oid, dkey, akey, offset, length, rsize), {}, decode_epoch);
}

Client::Future<MaxInfo> Client::query_max_async(ObjectId oid, std::string dkey, std::string akey,
                                                uint64_t epoch) {
  capnp::MallocMessageBuilder b(256);
  auto req = b.initRoot<schema::QueryMaxReq>();
  set_oid(req.initOid(), oid);
  req.setDkey(as_data(dkey));
  req.setAkey(as_data(akey));
  req.setEpoch(epoch);
  return call<MaxInfo>(*impl_, sys_.rank, target_of(oid), proto::kObjQueryMax, capn::to_body(b), {},
                       [](Message& m) -> Result<MaxInfo> {
                         capn::BodyReader br(m.body);
                         auto rep = br.root<schema::QueryMaxRep>();
                         return MaxInfo{rep.getFound(), from_data(rep.getDkey()), rep.getRecxEnd()};
                       });
}

namespace {
Result<AggregateInfo> decode_aggregate(Message& m) {
  capn::BodyReader br(m.body);
  auto r = br.root<schema::AggregateRep>();
  AggregateInfo a{r.getEpoch(),           r.getAkeysScanned(),   r.getVersionsDropped(),
                  r.getVersionsTrimmed(), r.getPunchesDropped(), r.getKeysRemoved(),
                  r.getBytesFreed()};
  a.punches_kept = r.getPunchesKept();
  return a;
}
}  // namespace

Client::Future<AggregateInfo> Client::aggregate_async(uint32_t target, uint64_t epoch,
                                                      std::vector<uint64_t> protect) {
  capnp::MallocMessageBuilder b(256);
  auto req = b.initRoot<schema::AggregateReq>();
  req.setEpoch(epoch);
  auto p = req.initProtected(static_cast<unsigned>(protect.size()));
  for (size_t i = 0; i < protect.size(); ++i) p.set(static_cast<unsigned>(i), protect[i]);
  return call<AggregateInfo>(*impl_, sys_.rank, target, proto::kObjAggregate, capn::to_body(b), {},
                             decode_aggregate);
}

Client::Future<bool> Client::checkpoint_async(uint32_t target) {
  return call<bool>(*impl_, sys_.rank, target, proto::kObjCheckpoint, {}, {},
                    [](Message&) -> Result<bool> { return true; });
}

namespace {
Result<StoreTargetStats> decode_stats(Message& m) {
  capn::BodyReader br(m.body);
  auto r = br.root<schema::TargetStatsRep>();
  StoreTargetStats s;
  s.capacity = r.getCapacity();
  s.used = r.getUsed();
  s.checkpoint_bytes = r.getCheckpointBytes();
  s.pending_free = r.getPendingFree();
  s.reserve = r.getReserve();
  s.wal_used = r.getWalUsed();
  s.wal_capacity = r.getWalCapacity();
  s.objects = r.getObjects();
  s.versions = r.getVersions();
  s.updates = r.getUpdates();
  s.fetches = r.getFetches();
  s.checkpoints = r.getCheckpoints();
  s.aggregations = r.getAggregations();
  s.aggregation_epoch = r.getAggregationEpoch();
  s.recovery_ms = r.getRecoveryMs();
  s.backend = r.getBackend();
  s.reencode_passes = r.getReencodePasses();
  s.reencode_stripes = r.getReencodeStripes();
  s.reencode_copy_bytes = r.getReencodeCopyBytes();
  s.reencode_error = r.getReencodeError();
  s.repair_damaged = r.getRepairDamaged();
  s.repair_repaired = r.getRepairRepaired();
  s.repair_unrepaired = r.getRepairUnrepaired();
  s.repair_error = r.getRepairError();
  s.scrubs = r.getScrubs();
  s.check_passes = r.getCheckPasses();
  s.check_done = r.getCheckDone();
  s.check_total = r.getCheckTotal();
  s.check_inconsistent = r.getCheckInconsistent();
  s.check_fixed = r.getCheckFixed();
  s.check_running = r.getCheckRunning();
  s.check_scrubs = r.getCheckScrubs();
  s.check_error = r.getCheckError();
  s.reclaim_passes = r.getReclaimPasses();
  s.reclaim_dkeys = r.getReclaimDkeys();
  s.reclaim_akeys = r.getReclaimAkeys();
  s.reclaim_bytes = r.getReclaimBytes();
  s.reclaim_error = r.getReclaimError();
  return s;
}
}  // namespace

Client::Future<StoreTargetStats> Client::stats_async(uint32_t target) {
  return call<StoreTargetStats>(*impl_, sys_.rank, target, proto::kObjStats, {}, {}, decode_stats);
}

void Client::learn_routes(const mgmt::PoolView& view) {
  run_on_client(*impl_, [&] {
    for (const auto& [rank, a] : view.addrs) {
      for (size_t i = 0; i < a.fabric_addrs.size(); ++i) {
        impl_->rt->set_route(rank, static_cast<uint16_t>(i), a.fabric_addrs[i]);
      }
    }
  });
}

namespace {
// Sends `body` (a request whose IoCtx names the pool) to every serving target of the pool map,
// in parallel, and collects the answers; the other targets answer `unavailable` unasked.
// Each answer is awaited for `timeout` (the client's when zero); `progress(done, total)`
// every quarter of a second while answers are awaited, and once at the end.
template <typename T, typename Decode>
std::vector<PoolTargetAnswer<T>> ask_every_target(
    Client::Impl& im, const mgmt::PoolView& view, uint16_t method, const Buffer& body,
    Decode decode, std::chrono::milliseconds timeout = {},
    const std::function<void(size_t, size_t)>& progress = {}) {
  std::vector<PoolTargetAnswer<T>> out;
  std::vector<std::optional<Client::Future<T>>> pending;
  for (const auto& e : view.pool.map.engines) {
    for (const auto& t : e.targets) {
      PoolTargetAnswer<T> a;
      a.rank = e.rank;
      a.target = t.index;
      a.state = std::string(placement::state_name(t.state));
      pending.emplace_back();
      if (placement::is_available(t.state) || placement::is_serving(t.state)) {
        pending.back() = call<T>(im, e.rank, t.index, method, Buffer(body.data(), body.size()),
                                 {}, decode, timeout);
      } else {
        a.answer = Status(Errc::unavailable, fmt::format("target is {}", a.state));
      }
      out.push_back(std::move(a));
    }
  }
  if (!progress) {
    for (size_t i = 0; i < out.size(); ++i) {
      if (pending[i]) out[i].answer = pending[i]->get();
    }
    return out;
  }
  size_t done = 0;
  for (const auto& p : pending) done += p ? 0 : 1;
  while (done < out.size()) {
    for (size_t i = 0; i < out.size(); ++i) {
      if (!pending[i] || !pending[i]->ready()) {
        continue;
      }
      out[i].answer = pending[i]->get();
      pending[i].reset();
      ++done;
    }
    progress(done, out.size());
    for (auto& p : pending) {
      if (p) {
        p->wait_for(std::chrono::milliseconds(250));
        break;
      }
    }
  }
  return out;
}

Buffer pool_ctx_body(uint32_t pool) {
  capnp::MallocMessageBuilder b;
  b.initRoot<schema::StatsReq>().initCtx().setPool(pool);
  return capn::to_body(b);
}

Result<ScrubInfo> decode_scrub(Message& m) {
  capn::BodyReader br(m.body);
  auto r = br.root<schema::ScrubRep>();
  ScrubInfo s;
  s.akeys = r.getAkeys();
  s.extents = r.getExtents();
  s.bytes = r.getBytes();
  s.damaged = r.getDamaged();
  s.repaired = r.getRepaired();
  s.unrepaired = r.getUnrepaired();
  s.last_error = r.getLastError();
  return s;
}
}  // namespace

std::vector<PoolTargetSpace> Client::pool_space(const mgmt::PoolView& view) {
  learn_routes(view);
  std::vector<PoolTargetSpace> out;
  for (auto& a : ask_every_target<StoreTargetStats>(*impl_, view, proto::kObjStats,
                                                    pool_ctx_body(view.pool.id), decode_stats)) {
    out.push_back(PoolTargetSpace{a.rank, a.target, std::move(a.state), std::move(a.answer)});
  }
  return out;
}

std::vector<PoolTargetReclaim> Client::pool_reclaim(const mgmt::PoolView& view) {
  learn_routes(view);
  std::vector<uint64_t> protect;  // every snapshot of every container stays readable
  for (const auto& c : view.conts) {
    for (const auto& sn : c.c.snapshots) protect.push_back(sn.epoch);
  }
  capnp::MallocMessageBuilder b(256);
  auto req = b.initRoot<schema::AggregateReq>();
  req.initCtx().setPool(view.pool.id);
  auto p = req.initProtected(static_cast<unsigned>(protect.size()));
  for (size_t i = 0; i < protect.size(); ++i) p.set(static_cast<unsigned>(i), protect[i]);
  std::vector<PoolTargetReclaim> out;
  for (auto& a : ask_every_target<AggregateInfo>(*impl_, view, proto::kObjAggregate,
                                                 capn::to_body(b), decode_aggregate)) {
    PoolTargetReclaim r;
    r.rank = a.rank;
    r.target = a.target;
    r.state = std::move(a.state);
    r.aggregated = std::move(a.answer);
    out.push_back(std::move(r));
  }
  // Then a checkpoint on each target that aggregated: the freed extents are reused after it.
  std::vector<std::optional<Future<bool>>> ckpt(out.size());
  for (size_t i = 0; i < out.size(); ++i) {
    if (!out[i].aggregated) continue;
    ckpt[i] = call<bool>(*impl_, out[i].rank, out[i].target, proto::kObjCheckpoint,
                         pool_ctx_body(view.pool.id), {},
                         [](Message&) -> Result<bool> { return true; });
  }
  for (size_t i = 0; i < out.size(); ++i) {
    if (!ckpt[i]) continue;
    auto r = ckpt[i]->get();
    out[i].checkpoint = r ? Status() : r.status();
  }
  return out;
}

std::vector<PoolTargetScrub> Client::pool_scrub(const mgmt::PoolView& view, double share) {
  learn_routes(view);
  capnp::MallocMessageBuilder b;
  auto req = b.initRoot<schema::ScrubReq>();
  auto ctx = req.initCtx();
  ctx.setPool(view.pool.id);
  ctx.setMapVersion(view.pool.map.version);  // the targets judge by this map at least
  req.setShare(share);
  return ask_every_target<ScrubInfo>(*impl_, view, proto::kObjScrub, capn::to_body(b),
                                     decode_scrub);
}

namespace {
Result<CheckInfo> decode_check(Message& m) {
  capn::BodyReader br(m.body);
  auto r = br.root<schema::CheckRep>();
  CheckInfo c;
  c.objects = r.getObjects();
  c.dkeys = r.getDkeys();
  c.akeys = r.getAkeys();
  c.extents = r.getExtents();
  c.bytes = r.getBytes();
  c.damaged = r.getDamaged();
  c.repaired = r.getRepaired();
  c.unrepaired = r.getUnrepaired();
  c.compared = r.getCompared();
  c.stripes = r.getStripes();
  c.inconsistent = r.getInconsistent();
  c.fixed = r.getFixed();
  c.unchecked = r.getUnchecked();
  c.left_off = r.getLeftOff();
  c.last_error = r.getLastError();
  for (auto f : r.getFindings()) {
    CheckFindingInfo i;
    i.oid = ObjectId{f.getOid().getHi(), f.getOid().getLo()};
    i.dkey = capn::from_data(f.getDkey());
    i.akey = capn::from_data(f.getAkey());
    i.offset = f.getOffset();
    i.length = f.getLength();
    i.what = f.getWhat();
    i.copies = f.getCopies();
    i.repaired = f.getRepaired();
    c.findings.push_back(std::move(i));
  }
  return c;
}
}  // namespace

std::vector<PoolTargetCheck> Client::cont_check(
    const mgmt::PoolView& view, uint32_t cont, bool repair, double share,
    std::chrono::milliseconds wait, const std::function<void(size_t, size_t)>& progress) {
  learn_routes(view);
  capnp::MallocMessageBuilder b;
  auto req = b.initRoot<schema::CheckReq>();
  auto ctx = req.initCtx();
  ctx.setPool(view.pool.id);
  ctx.setMapVersion(view.pool.map.version);  // the targets judge by this map at least
  req.setCont(cont);
  req.setRepair(repair);
  req.setShare(share);
  return ask_every_target<CheckInfo>(*impl_, view, proto::kObjCheck, capn::to_body(b),
                                     decode_check, wait, progress);
}

std::string Client::printable_address(const std::string& raw) {
  std::string text;
  run_on_client(*impl_, [&] { text = impl_->ep->printable(raw); });
  return text;
}

Client::Future<std::pair<std::vector<KeyEntry>, std::string>> Client::list_async(
    ListScope scope, ObjectId oid, std::string dkey, std::string anchor, uint32_t limit,
    uint32_t target, std::string akey, uint64_t epoch) {
  uint32_t tgt = scope == ListScope::objects ? target : target_of(oid);
  using Page = ListPage;
  return call<Page>(*impl_, sys_.rank, tgt, proto::kObjList,
                    list_body(scope, oid, dkey, akey, anchor, limit, epoch), {}, decode_list);
}

Client::Future<Buffer> Client::ping_async(uint32_t target, Buffer payload) {
  return call<Buffer>(*impl_, sys_.rank, target, proto::kObjPing, {}, std::move(payload),
                      [](Message& m) -> Result<Buffer> { return std::move(m.bulk); });
}

Result<std::vector<KeyEntry>> Client::list_all(ListScope scope, ObjectId oid, std::string dkey,
                                               std::string akey, uint64_t epoch) {
  std::vector<KeyEntry> all;
  uint32_t ntargets = scope == ListScope::objects ? static_cast<uint32_t>(sys_.targets.size()) : 1;
  for (uint32_t t = 0; t < ntargets; ++t) {
    std::string anchor;
    do {
      auto page = list_async(scope, oid, dkey, anchor, 1000, t, akey, epoch).get();
      if (!page) return page.status();
      for (auto& e : page->first) all.push_back(std::move(e));
      anchor = std::move(page->second);
    } while (!anchor.empty());
  }
  if (scope == ListScope::objects) {
    std::sort(all.begin(), all.end(),
              [](const KeyEntry& a, const KeyEntry& b) { return a.oid < b.oid; });
  }
  return all;
}

}  // namespace tessera
