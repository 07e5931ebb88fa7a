// The one Aegis Cedar schema: API authorization and mesh authorization share it.
//
// API (policy documents under sys/policies/cedar/, scoped to the tokens that carry them):
//  principal  Aegis::Token  — the caller's token, `in` each Aegis::Policy it carries; its metadata are tags.
//  action     read | create | update | delete | list | sudo
//  resource   Aegis::Path   — the request path, `in` every folder above it (so `resource in Aegis::Path::"secret/data/app/"`
//             covers the subtree); its segments are tags "0", "1", ... (so a condition can compare one segment).
//  context    client_ip     — the caller's address.
//
// Mesh (intentions and mesh policies under mesh/, not scoped to tokens):
//  principal  Aegis::Service — the calling service, id `<namespace>/<name>`, `in` its Aegis::Namespace.
//  action     connect
//  resource   Aegis::Service — the service being called.
//  context    method?, path?, headers? — present only for HTTP requests (a TCP connection has none of them), so
//             conditions must test `context has method` first (strict validation refuses them otherwise).
//             `headers` is an Aegis::HttpHeaders entity whose tags are the request's headers: names lowercase (as
//             Node gives them), a repeated header as one value joined with ", " (RFC 9110 field combination;
//             `cookie` with "; "). A condition reads one as
//             `context has headers && context.headers.hasTag("x-role") && context.headers.getTag("x-role") == "admin"`
//             (strict validation also wants the `hasTag` before the `getTag`).
//
// Validation checks a statement against every action it may apply to. API documents are validated with their
// token scope (`principal in Aegis::Policy::"<name>"`) already added, which a Service can never satisfy, so an
// API statement with an unconstrained action is not checked against `connect` (and keeps validating). Mesh
// statements are restricted to `connect` before validation, symmetrically.
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

  entity Namespace;
  entity Service in [Namespace] = {
    namespace: String,
    name: String,
  };
  entity HttpHeaders tags String;
  type ConnectContext = { method?: String, path?: String, headers?: HttpHeaders };
  action connect appliesTo {
    principal: [Service],
    resource: [Service],
    context: ConnectContext,
  };
}
`;

/** The schema's entity types and the mesh action, for code that builds Cedar. */
export const SERVICE_TYPE = 'Aegis::Service';
export const NAMESPACE_TYPE = 'Aegis::Namespace';
export const HTTP_HEADERS_TYPE = 'Aegis::HttpHeaders';
export const ACTION_TYPE = 'Aegis::Action';
export const CONNECT = 'connect';
