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
`;

export const BUILTIN_NAMES = ['root', 'default'] as const;
