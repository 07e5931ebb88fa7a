// Built-in policies. `root` may do everything and cannot be changed; `default` is attached to every token unless
// `no_default_policy` is set, and lets a token look after itself (Vault's default policy, in Cedar).
export const ROOT_POLICY = `@id("all")
permit (principal, action, resource);
`;

export const DEFAULT_POLICY = `// Lets every token look itself up, renew and revoke itself, and ask what it may do.
@id("lookup-self")
permit (
  principal,
  action in [Aegis::Action::"read", Aegis::Action::"update"],
  resource == Aegis::Path::"auth/token/lookup-self"
);

@id("renew-self")
permit (principal, action == Aegis::Action::"update", resource == Aegis::Path::"auth/token/renew-self");

@id("revoke-self")
permit (principal, action == Aegis::Action::"update", resource == Aegis::Path::"auth/token/revoke-self");

@id("capabilities-self")
permit (principal, action == Aegis::Action::"update", resource == Aegis::Path::"sys/capabilities-self");

// Lease IDs carry 144 random bits: whoever holds one (the client that got the secret) may look it up and renew
// it, as in Vault's default policy. Revoking needs a policy that grants it.
@id("lease-renew")
permit (principal, action == Aegis::Action::"update", resource == Aegis::Path::"sys/leases/renew");

@id("lease-renew-legacy")
permit (principal, action == Aegis::Action::"update", resource == Aegis::Path::"sys/renew");

@id("lease-lookup")
permit (principal, action == Aegis::Action::"update", resource == Aegis::Path::"sys/leases/lookup");

// Wrapping: any token may wrap data of its own (sys/wrapping/wrap); unwrap, lookup and rewrap take the wrapping
// token itself as their credential.
@id("wrapping-wrap")
permit (principal, action == Aegis::Action::"update", resource == Aegis::Path::"sys/wrapping/wrap");
`;

// Carried by callers authenticated as a workload (an X.509-SVID over mutual TLS, or a token from attestation):
// get and renew their own SVIDs and JWT-SVIDs, read what a proxy needs, and report what their proxy saw
// (mesh/events). The SPIFFE ID is never chosen by the caller: handlers take it from the attested identity
// (entity_id), which nothing in the API can set.
export const WORKLOAD_POLICY = `@id("workload-svid")
permit (principal, action in [Aegis::Action::"create", Aegis::Action::"update"], resource == Aegis::Path::"identity/svid")
when { principal.entity_id like "spiffe://*" };

@id("workload-jwt-svid")
permit (principal, action in [Aegis::Action::"create", Aegis::Action::"update"], resource == Aegis::Path::"identity/jwt-svid")
when { principal.entity_id like "spiffe://*" };

@id("workload-jwt-validate")
permit (principal, action in [Aegis::Action::"create", Aegis::Action::"update"], resource == Aegis::Path::"identity/jwt-svid/validate")
when { principal.entity_id like "spiffe://*" };

@id("workload-revocations")
permit (principal, action == Aegis::Action::"read", resource == Aegis::Path::"identity/revocations")
when { principal.entity_id like "spiffe://*" };

@id("workload-mesh-events")
permit (principal, action in [Aegis::Action::"create", Aegis::Action::"update"], resource == Aegis::Path::"mesh/events")
when { principal.entity_id like "spiffe://*" };

// What a sidecar proxy needs, confined by the tags of its verified SPIFFE ID (namespace, service, sidecar): the
// mesh config of its own service; register, update and deregister instances of its own sidecar service only; TTL
// reports (the handler also requires update on the check's owning instance, so only its own checks); discovery of
// other services' sidecars (their inbound mTLS listeners: where to dial, never what is allowed).
@id("workload-mesh-config")
permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"mesh/config/")
when { principal.entity_id like "spiffe://*" && principal.hasTag("namespace") && principal.hasTag("service") &&
  resource.depth == 4 && resource.hasTag("2") && resource.hasTag("3") &&
  resource.getTag("2") == principal.getTag("namespace") && resource.getTag("3") == principal.getTag("service") };

@id("workload-sidecar-register")
permit (principal, action in [Aegis::Action::"create", Aegis::Action::"update", Aegis::Action::"delete"], resource in Aegis::Path::"catalog/service/")
when { principal.entity_id like "spiffe://*" && principal.hasTag("namespace") && principal.hasTag("sidecar") &&
  resource.depth == 5 && resource.hasTag("2") && resource.hasTag("3") &&
  resource.getTag("2") == principal.getTag("namespace") && resource.getTag("3") == principal.getTag("sidecar") };

@id("workload-sidecar-ttl")
permit (principal, action == Aegis::Action::"update", resource in Aegis::Path::"health/check/")
when { principal.entity_id like "spiffe://*" && principal.hasTag("namespace") &&
  resource.depth == 4 && resource.hasTag("2") && resource.getTag("2") == principal.getTag("namespace") };

@id("workload-sidecar-discovery")
permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"health/service/")
when { principal.entity_id like "spiffe://*" && resource.depth == 4 && resource.hasTag("3") && resource.getTag("3") like "*-sidecar-proxy" };
`;

export const BUILTIN_NAMES = ['root', 'default', 'workload'] as const;
