/**
 * kbs: the volume key is a resource of a Trustee key broker, released after remote attestation.
 * `cdh_type = "one-shot"` (upstream's default) is served by our own RCAR client; "daemon" asks a
 * running confidential-data-hub over its ttrpc socket.
 */
import type { KbsConfig } from "../config/providers/kbs.ts";
import { getKbsResource, type KbsClientConfig } from "../kbs/client.ts";
import { parseResourcePath } from "../kbs/resource-uri.ts";
import { KBS_RETRY } from "../net/retry.ts";
import { checkKeySize } from "./key-size.ts";
import type { KeyProvider, ProviderContext } from "./provider.ts";

export function create(config: KbsConfig, ctx: ProviderContext): KeyProvider {
  const path = parseResourcePath(config.resourcePath, "key_uri");
  const where = config.cdhType === "daemon" ? `confidential-data-hub ${config.cdhSocket}` : config.url!;
  const nonEmpty = (key: Uint8Array) =>
    checkKeySize(
      "kbs",
      key,
      `resource ${path} from ${where} (volume ${ctx.volume})`,
      "store the passphrase as the resource's content",
    );

  if (config.cdhType === "daemon") {
    return {
      name: "kbs",
      temporary: false,
      describe: () => `kbs via ${where} resource ${path}`,
      async getKey() {
        const { getResourceFromCdh } = await import("../kbs/cdh.ts");
        return nonEmpty(await getResourceFromCdh(config.cdhSocket!, path, config.requestTimeoutMs));
      },
    };
  }

  const client: KbsClientConfig = {
    url: config.url!,
    attestUrl: config.attestationUrl,
    tee: config.tee,
    attestation: config.snpEvidenceFormat ? { snpEvidenceFormat: config.snpEvidenceFormat } : undefined,
    ca: config.rootCert,
    keyAlgorithm: config.teeKeyAlgorithm,
    retry: {
      ...KBS_RETRY,
      attempts: config.retryAttempts,
      totalTimeoutMs: config.retryTimeoutMs,
      requestTimeoutMs: config.requestTimeoutMs,
    },
  };
  return {
    name: "kbs",
    temporary: false,
    describe: () =>
      `kbs ${config.url} resource ${path}${config.attestationUrl ? ` (passport from ${config.attestationUrl})` : ""}${config.tee ? ` tee ${config.tee}` : ""}`,
    async getKey() {
      return nonEmpty(await getKbsResource(client, path));
    },
  };
}
