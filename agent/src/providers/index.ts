/**
 * Builds the key provider for a volume. Each provider's module is imported only when a config
 * uses it, so `config check` on an exec setup never loads the KBS client, TPM bindings or x509.
 * Owners of a provider replace its `notAvailable` line with the lazy import of their module.
 */
import type { ProviderConfig } from "../config/providers.ts";
import { KeyProviderError } from "../errors.ts";
import type { KeyProvider, ProviderContext } from "./provider.ts";

export type { KeyProvider, ProviderContext } from "./provider.ts";

function notAvailable(type: string, ctx: ProviderContext): never {
  throw new KeyProviderError(type, `not available in this build of cryptpilot-fde (volume ${ctx.volume})`, {
    hint: "use a provider this build supports, or a newer build",
  });
}

export async function createProvider(config: ProviderConfig, ctx: ProviderContext): Promise<KeyProvider> {
  switch (config.type) {
    case "exec":
      return (await import("./exec.ts")).create(config, ctx);
    case "otp":
      return (await import("./otp.ts")).create(config, ctx);
    case "kbs":
      return (await import("./kbs.ts")).create(config, ctx);
    case "kms":
      return notAvailable("kms", ctx);
    case "oidc":
      return notAvailable("oidc", ctx);
    case "tpm2":
      return (await import("./tpm2.ts")).create(config, ctx);
  }
}
