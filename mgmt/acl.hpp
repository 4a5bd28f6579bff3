// Access control lists of pools and containers, and the credentials a caller presents.
//
// The text form follows DAOS: one entry per ACE, "A:FLAGS:PRINCIPAL:PERMS", FLAGS empty or "G"
// (a named group), PRINCIPAL one of OWNER@, GROUP@ (the owner group), EVERYONE@, or name@ (a
// user, or a group with flag G; a number is accepted as name). PERMS are letters:
//   r read   w write   c create-container   d delete   t get-prop   T set-prop   a get-acl
//   A set-acl
// Evaluation order (first match wins, groups add up): the owner's OWNER@ entry, a named user
// entry, the union of GROUP@ (if the caller is in the owner group) and named groups, EVERYONE@.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.hpp"

namespace tessera::mgmt {

enum Perm : uint32_t {
  kRead = 1,
  kWrite = 2,
  kCreateCont = 4,
  kDelete = 8,
  kGetProp = 16,
  kSetProp = 32,
  kGetAcl = 64,
  kSetAcl = 128,
  kAllPerms = 255,
};
std::string perm_letters(uint32_t perms);
std::string perm_words(uint32_t perms);  // "read, write" (for error messages)

// Who the caller is: as a node agent's signed credential says (the kernel's word), or as an
// engine or administrator authenticated with the system key says on a user's behalf.
struct Cred {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> groups;  // supplementary groups
  std::string user;              // name, for messages
  bool system = false;           // sent with the system key: engine-only requests allowed
  bool in_group(uint32_t g) const;
  static Cred current();  // the calling process's
};

enum class Principal : uint8_t { owner, owner_group, user, group, everyone };

struct Ace {
  Principal who = Principal::everyone;
  uint32_t id = 0;   // user: uid; group: gid
  std::string name;  // as written (user/group), for display
  uint32_t perms = 0;
  bool operator==(const Ace&) const = default;
};

struct Acl {
  uint32_t owner_uid = 0;
  uint32_t owner_gid = 0;
  std::vector<Ace> entries;

  uint32_t perms_for(const Cred& c) const;
  // Adds or replaces the entry for the same principal.
  void update(const Ace& a);
  // Removes the entry for the principal of `a` (its perms ignored); false if none.
  bool remove(const Ace& a);
  std::vector<std::string> text() const;
};

// Parses "A::OWNER@:rw", "A:G:staff@:r", "A::alice@:rwd", "A::1001@:r". Names are resolved
// with the local user/group database (numbers as given).
Result<Ace> parse_ace(const std::string& s);
std::string ace_text(const Ace& a);

// Default ACLs (as DAOS): pool: owner rw + owner group rw (read = connect/query,
// write = create and destroy containers); container: owner everything, owner group rwtT.
Acl default_pool_acl(const Cred& owner);
Acl default_cont_acl(const Cred& owner);

// "permission denied: uid 65534 (nobody) lacks read on container 'c1'"
Status denied(const Cred& c, uint32_t need, const std::string& what);

}  // namespace tessera::mgmt
