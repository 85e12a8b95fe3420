/**
 * Builds the key provider for a volume. Each provider's module is imported only when a config
 * uses it, so `config check` on an exec setup never loads the KBS client, TPM bindings or x509.
 */
import type { ProviderConfig, ProviderType } from "../config/providers/index.ts";
import type { KeyProvider, ProviderContext } from "./provider.ts";

export { BOOT_FRESH_KEY, type FreshKey, type KeyProvider, type ProviderContext } from "./provider.ts";

/** A provider's runtime module: providers/<type>.ts, next to its table in config/providers/<type>.ts. */
interface ProviderModule<C extends ProviderConfig> {
  create(config: C, ctx: ProviderContext): KeyProvider;
}

/** Every provider's module by table name (the registry config/providers/index.ts has the tables). */
export const PROVIDER_MODULES: {
  readonly [T in ProviderType]: () => Promise<ProviderModule<Extract<ProviderConfig, { type: T }>>>;
} = {
  exec: () => import("./exec.ts"),
  otp: () => import("./otp.ts"),
  kbs: () => import("./kbs.ts"),
  kms: () => import("./kms.ts"),
  oidc: () => import("./oidc.ts"),
  tpm2: () => import("./tpm2.ts"),
};

export async function createProvider(config: ProviderConfig, ctx: ProviderContext): Promise<KeyProvider> {
  const load = PROVIDER_MODULES[config.type] as () => Promise<ProviderModule<ProviderConfig>>;
  return (await load()).create(config, ctx);
}
