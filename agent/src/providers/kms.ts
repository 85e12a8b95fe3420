/**
 * kms: the volume key is a secret in Alibaba Cloud KMS. Two ways in, as upstream cryptpilot:
 * - client_key: GetSecretValue on the KMS instance endpoint, signed with the application access
 *   point's client key, TLS trusting only the instance CA (kms_cert_pem);
 * - ecs_ram_role: region and role from the ECS metadata service, the role's STS credentials, and
 *   GetSecretValue on the shared kms.<region>.aliyuncs.com gateway.
 * As upstream, the secret value is base64 text and the passphrase is its decoding.
 */
import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import {
  type ClientKey,
  type ClientKeyFile,
  loadClientKey,
  parseClientKeyFile,
} from "../aliyun/client-key.ts";
import { AliyunError } from "../aliyun/errors.ts";
import { Imds } from "../aliyun/imds.ts";
import { getSecretValue, instanceEndpoint } from "../aliyun/instance-api.ts";
import { getSecretValueRpc, kmsEndpoint } from "../aliyun/kms-rpc.ts";
import type { KmsConfig } from "../config/providers/kms.ts";
import { ConfigError, FdeError, KeyProviderError } from "../errors.ts";
import { log } from "../log.ts";
import { checkKeySize } from "./key-size.ts";
import type { KeyProvider, ProviderContext } from "./provider.ts";

/** Where a credential's text came from, for messages. */
interface Sourced {
  text: string;
  source: string;
}

export function create(config: KmsConfig, ctx: ProviderContext): KeyProvider {
  const where = `kms key provider (volume ${ctx.volume})`;
  const secretName = config.secretName;
  if (secretName === undefined) {
    throw new ConfigError(
      `${where}: secret_name is missing: the name of the KMS secret that holds this volume's key. ` +
        "The documented form (client_key_id, client_key_password_from_kms) does not name the secret; add secret_name.",
    );
  }
  const fetchSecret =
    config.authMode === "ecs_ram_role" ? ramRoleFetcher(config) : clientKeyFetcher(config, ctx, where);
  const via =
    config.authMode === "ecs_ram_role"
      ? `ECS RAM role ${config.ecsRamRoleName ?? "(from instance metadata)"}`
      : `client key of ${config.kmsInstanceId}`;

  return {
    name: "kms",
    temporary: false,
    describe: () => `kms secret "${secretName}" via ${via}`,
    async getKey() {
      let data: string;
      try {
        data = await fetchSecret(secretName);
      } catch (err) {
        if (err instanceof FdeError && !(err instanceof AliyunError)) throw rewrap(err, secretName, ctx);
        throw new KeyProviderError(
          "kms",
          `cannot read secret "${secretName}" for volume ${ctx.volume}: ${(err as Error).message}`,
          {
            cause: err,
            hint: err instanceof FdeError ? err.hint : undefined,
          },
        );
      }
      return decodePassphrase(data, secretName);
    },
  };
}

/** Credential problems found while unlocking the client key keep their message, under the provider's name. */
function rewrap(err: FdeError, secretName: string, ctx: ProviderContext): FdeError {
  if (err instanceof KeyProviderError || err instanceof ConfigError) return err;
  return new KeyProviderError(
    "kms",
    `cannot read secret "${secretName}" for volume ${ctx.volume}: ${err.message}`,
    {
      cause: err,
      hint: err.hint,
    },
  );
}

/**
 * cryptpilot base64-decodes the secret value (strict standard alphabet, padded), so secrets made
 * for it hold base64 text. Anything else is refused rather than silently used as a different key.
 */
function decodePassphrase(data: string, secretName: string): Uint8Array {
  if (data.length === 0 || data.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(data)) {
    throw new KeyProviderError("kms", `the value of secret "${secretName}" is not base64 text`, {
      hint: "store the volume key base64-encoded in the KMS secret, as cryptpilot expects",
    });
  }
  return checkKeySize(
    "kms",
    new Uint8Array(Buffer.from(data, "base64")),
    `the value of secret "${secretName}"`,
    "store the volume key base64-encoded in the KMS secret, as cryptpilot expects",
  );
}

function clientKeyFetcher(
  config: KmsConfig,
  ctx: ProviderContext,
  where: string,
): (secret: string) => Promise<string> {
  const files = clientKeyFiles(config, ctx, where);
  const endpoint = config.endpoint ?? instanceEndpoint(config.kmsInstanceId);
  let key: Promise<ClientKey> | undefined;
  return async (secret) => {
    // Unwrapping the PKCS#12 costs ~100 ms: once per provider.
    key ??= loadClientKey(files.clientKey, files.password.text);
    key.catch(() => {
      key = undefined;
    });
    return getSecretValue({ endpoint, caPem: files.caPem.text, key: await key }, secret);
  };
}

/**
 * Reads the three downloaded files, each given inline, as a path, or (documented form) found by
 * its console name in the config directory: clientKey_<id>.json, clientKey_<id>_Password.txt,
 * PrivateKmsCA_<kst-id>.pem.
 */
function clientKeyFiles(
  config: KmsConfig,
  ctx: ProviderContext,
  where: string,
): { clientKey: ClientKeyFile; password: Sourced; caPem: Sourced } {
  const id = config.clientKeyId;
  const missing: string[] = [];
  const pick = (
    field: string,
    inline: string | undefined,
    isInline: (s: string) => boolean,
    fallback?: string,
  ): Sourced | undefined => {
    if (inline !== undefined && isInline(inline)) return { text: inline, source: field };
    const path =
      inline !== undefined ? resolve(ctx.configDir, inline) : fallback && join(ctx.configDir, fallback);
    if (path === undefined) {
      missing.push(field);
      return undefined;
    }
    try {
      return { text: readFileSync(path, "utf8"), source: path };
    } catch (cause) {
      if (inline === undefined && !existsSync(path)) {
        missing.push(`${field} (or the file ${path})`);
        return undefined;
      }
      throw new ConfigError(`${where}: cannot read ${field} file ${path}: ${(cause as Error).message}`, {
        cause,
      });
    }
  };
  if (config.clientKeyPasswordFromKms !== undefined) {
    log.warn(
      `${where}: client_key_password_from_kms is not supported (KMS cannot be asked before the client key authenticates); ` +
        "the password is read from client_key_password, client_key_password_file or clientKey_<id>_Password.txt",
    );
  }
  const clientKey = pick(
    "client_key",
    config.clientKey,
    (s) => s.trimStart().startsWith("{"),
    id && `clientKey_${id}.json`,
  );
  const password =
    config.clientKeyPassword !== undefined
      ? { text: config.clientKeyPassword, source: "client_key_password" }
      : pick(
          "client_key_password",
          config.clientKeyPasswordFile,
          () => false,
          id && `clientKey_${id}_Password.txt`,
        );
  const caPem = pick(
    "kms_cert_pem",
    config.kmsCertPem,
    (s) => s.includes("-----BEGIN"),
    id && `PrivateKmsCA_${config.kmsInstanceId}.pem`,
  );
  if (!clientKey || !password || !caPem) {
    throw new ConfigError(
      `${where}: client-key authentication still needs ${missing.join(", ")}. Give the content of the files downloaded ` +
        `from the KMS console inline or as paths (client_key, client_key_password or client_key_password_file, kms_cert_pem), ` +
        `or set client_key_id and put the files under their console names in ${ctx.configDir}.`,
    );
  }
  let file: ClientKeyFile;
  try {
    file = parseClientKeyFile(clientKey.text, clientKey.source);
  } catch (cause) {
    throw new ConfigError(`${where}: ${(cause as Error).message}`, { cause });
  }
  if (id !== undefined && file.KeyId !== id) {
    throw new ConfigError(
      `${where}: client_key_id is ${id} but ${clientKey.source} holds client key ${file.KeyId}`,
    );
  }
  return { clientKey: file, password, caPem };
}

function resolve(dir: string, path: string): string {
  return isAbsolute(path) ? path : join(dir, path);
}

function ramRoleFetcher(config: KmsConfig): (secret: string) => Promise<string> {
  return async (secret) => {
    // A fresh IMDSv2 session per fetch: tokens are short-lived.
    const imds = new Imds(config.imdsEndpoint);
    const regionId = config.regionId ?? (await imds.regionId());
    const role = config.ecsRamRoleName ?? (await imds.ramRoleName());
    // Fetched per call: the metadata service rotates role credentials well before they expire.
    const credentials = await imds.roleCredentials(role);
    return getSecretValueRpc(
      { endpoint: config.endpoint ?? kmsEndpoint(regionId), regionId, credentials },
      secret,
    );
  };
}
