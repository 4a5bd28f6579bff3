// One change of a user transaction as TxReq carries it (proto/object.capnp, TxOp): the client
// that commits and the engines that prepare read and write it the same way.
#pragma once

#include <string>

#include "core/object.hpp"
#include "proto/capnp_util.hpp"
#include "proto/object.capnp.h"

namespace tessera::proto {

struct TxChange {
  bool update = false;  // else a punch
  ObjectId oid;         // the user's OID
  std::string dkey, akey;
  ValueKind kind = ValueKind::single;
  uint64_t offset = 0;  // arrays: first record
  uint64_t length = 0;  // a range punch: records (0: the whole key)
  uint32_t rsize = 1;
  Cond cond = Cond::none;
  uint64_t data_off = 0, data_len = 0;  // its bytes in the request's bulk
  uint32_t crc = 0;                     // crc32c of them
  uint32_t pos = 0;  // an erasure-coded piece: its position + 1 in the dkey's group (0: none)
};

inline void set_tx_op(schema::TxOp::Builder w, const TxChange& c) {
  w.setOp(c.update ? schema::TxOp::Op::UPDATE : schema::TxOp::Op::PUNCH);
  w.initOid().setHi(c.oid.hi);
  w.getOid().setLo(c.oid.lo);
  w.setDkey(capn::as_data(c.dkey));
  w.setAkey(capn::as_data(c.akey));
  w.setKind(c.kind == ValueKind::array ? schema::ValueKind::ARRAY : schema::ValueKind::SINGLE);
  w.setOffset(c.offset);
  w.setLength(c.length);
  w.setRsize(c.rsize);
  w.setCond(static_cast<uint8_t>(c.cond));
  w.setDataOff(c.data_off);
  w.setDataLen(c.data_len);
  w.setCrc(c.crc);
  w.setPos(c.pos);
}

// Inside a DecodeScope. An unknown condition reads as none and sets `bad`.
inline TxChange tx_op_of(schema::TxOp::Reader o, bool& bad) {
  TxChange c;
  c.update = o.getOp() == schema::TxOp::Op::UPDATE;
  c.oid = ObjectId{o.getOid().getHi(), o.getOid().getLo()};
  c.dkey = capn::from_data(o.getDkey());
  c.akey = capn::from_data(o.getAkey());
  c.kind = o.getKind() == schema::ValueKind::ARRAY ? ValueKind::array : ValueKind::single;
  c.offset = o.getOffset();
  c.length = o.getLength();
  c.rsize = o.getRsize() == 0 ? 1 : o.getRsize();
  if (o.getCond() > 2) bad = true;
  c.cond = o.getCond() <= 2 ? static_cast<Cond>(o.getCond()) : Cond::none;
  c.data_off = o.getDataOff();
  c.data_len = o.getDataLen();
  c.crc = o.getCrc();
  c.pos = o.getPos();
  return c;
}

}  // namespace tessera::proto
