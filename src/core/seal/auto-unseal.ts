// The seam for automatic unsealing: something outside the database that can wrap and unwrap the root key.
// Implementations: a key file (key-file.ts). Cloud KMS or HSM would be further implementations of this interface.
export interface AutoUnseal {
  readonly type: string;
  wrap(rootKey: Buffer): Promise<Buffer>;
  unwrap(wrapped: Buffer): Promise<Buffer>;
}
