// The Aegis Cedar schema for API authorization.
//  principal  Aegis::Token  — the caller's token, `in` each Aegis::Policy it carries; its metadata are tags.
//  action     read | create | update | delete | list | sudo
//  resource   Aegis::Path   — the request path, `in` every folder above it (so `resource in Aegis::Path::"secret/data/app/"`
//             covers the subtree); its segments are tags "0", "1", ... (so a condition can compare one segment).
//  context    client_ip     — the caller's address.
export const API_SCHEMA = `
namespace Aegis {
  entity Policy;
  entity Path in [Path] = {
    path: String,
    depth: Long,
  } tags String;
  entity Token in [Policy] = {
    accessor: String,
    display_name: String,
    policies: Set<String>,
    orphan: Bool,
    entity_id: String,
  } tags String;
  type RequestContext = { client_ip: ipaddr };
  action read, create, update, delete, list, sudo appliesTo {
    principal: [Token],
    resource: [Path],
    context: RequestContext,
  };
}
`;
