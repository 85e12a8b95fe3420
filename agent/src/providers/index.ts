/**
 * Builds the key provider for a volume. Each provider's module is imported only when a config
 * uses it, so `config check` on an exec setup never loads the KBS client, TPM bindings or x509.
 */
import type { ProviderConfig } from "../config/providers/index.ts";
import type { KeyProvider, ProviderContext } from "./provider.ts";

export type { KeyProvider, ProviderContext } from "./provider.ts";

export async function createProvider(config: ProviderConfig, ctx: ProviderContext): Promise<KeyProvider> {
  switch (config.type) {
    case "exec":
      return (await import("./exec.ts")).create(config, ctx);
    case "otp":
      return (await import("./otp.ts")).create(config, ctx);
    case "kbs":
      return (await import("./kbs.ts")).create(config, ctx);
    case "kms":
      return (await import("./kms.ts")).create(config, ctx);
    case "oidc":
      return (await import("./oidc.ts")).create(config, ctx);
    case "tpm2":
      return (await import("./tpm2.ts")).create(config, ctx);
  }
}
