/**
 * oidc: the volume key is a KMS secret read with credentials obtained from an OIDC token. The
 * token command prints an id_token; STS AssumeRoleWithOIDC trades it for temporary credentials of
 * the configured RAM role; KMS GetSecretValue on the shared gateway, signed with them, returns the
 * secret. Upstream cryptpilot routes this through confidential-data-hub; we speak to STS and KMS
 * directly (same requests), and the passphrase is the raw SecretData bytes, as upstream.
 */
import { getSecretValueRpc, kmsEndpoint } from "../aliyun/kms-rpc.ts";
import { assumeRoleWithOidc, stsEndpoint } from "../aliyun/sts.ts";
import type { OidcConfig } from "../config/providers/oidc.ts";
import { ConfigError, FdeError, KeyProviderError } from "../errors.ts";
import { type SpawnOutcome, spawnBounded, stderrDetail } from "../subprocess.ts";
import { MAX_KEY_BYTES } from "./key-size.ts";
import type { KeyProvider, ProviderContext } from "./provider.ts";

export function create(config: OidcConfig, ctx: ProviderContext): KeyProvider {
  const where = `oidc key provider (volume ${ctx.volume})`;
  const { keyId, aliyun } = config;
  if (keyId === undefined || aliyun === undefined) {
    throw new ConfigError(
      `${where}: the documented form (kms_instance_id, client_key_password_from_kms, [oidc_token_from_exec]) does not say ` +
        "which secret to read or which RAM role to assume. Add key_id (the KMS secret name) and a [kms] table with " +
        'type = "aliyun", oidc_provider_arn, role_arn and region_id. kms_instance_id and client_key_password_from_kms ' +
        "are not used: the token is exchanged at STS and the secret read through the shared KMS gateway.",
    );
  }
  const { command, args, timeoutMs } = config.tokenCommand;
  const fail = (message: string, cause?: unknown) =>
    new KeyProviderError("oidc", `cannot read secret "${keyId}" for volume ${ctx.volume}: ${message}`, {
      cause,
      hint: cause instanceof FdeError ? cause.hint : undefined,
    });

  /**
   * Runs the token command under spawnBounded()'s bounds. Not through command.ts's run(): that
   * logs argv in verbose mode, and a token may be passed as an argument.
   */
  async function token(): Promise<string> {
    const label = `the token command ${command}`;
    let outcome: SpawnOutcome;
    try {
      outcome = await spawnBounded(
        command,
        args,
        // A JWT is held to the bound of a key: anything longer is not a token.
        { timeoutMs, maxStdout: MAX_KEY_BYTES },
        `oidc key provider: ${label}`,
      );
    } catch (cause) {
      throw fail(`${label} could not be started: ${(cause as Error).message}`, cause);
    }
    const { code, signal } = outcome;
    const detail = stderrDetail(outcome.stderr, 3);
    // cryptpilot sends stdout untrimmed; a trailing newline is not part of a JWT.
    const jwt = new TextDecoder().decode(outcome.stdout).trim();
    outcome.stdout.fill(0);
    if (outcome.timedOut) throw fail(`${label} did not finish within ${timeoutMs} ms${detail}`);
    if (outcome.overflowed)
      throw fail(`${label} printed more than ${MAX_KEY_BYTES} bytes; that is not a token`);
    if (outcome.leftovers.length > 0) {
      throw fail(
        `${label} left process(es) ${outcome.leftovers.join(", ")} holding its stdout after it exited (killed); ` +
          "the token may be incomplete",
      );
    }
    if (code !== 0)
      throw fail(
        `${label} ${code === null ? `was killed by ${signal}` : `exited with code ${code}`}${detail}`,
      );
    if (!jwt) throw fail(`${label} printed nothing${detail}`);
    return jwt;
  }

  return {
    name: "oidc",
    temporary: false,
    describe: () => `oidc secret "${keyId}" via role ${aliyun.roleArn} (${aliyun.regionId})`,
    async getKey() {
      const oidcToken = await token();
      try {
        const credentials = await assumeRoleWithOidc({
          endpoint: aliyun.stsEndpoint ?? stsEndpoint(aliyun.regionId),
          roleArn: aliyun.roleArn,
          oidcProviderArn: aliyun.oidcProviderArn,
          oidcToken,
        });
        const data = await getSecretValueRpc(
          {
            endpoint: aliyun.endpoint ?? kmsEndpoint(aliyun.regionId),
            regionId: aliyun.regionId,
            credentials,
          },
          keyId,
        );
        if (!data) throw fail("the secret value is empty");
        return new TextEncoder().encode(data);
      } catch (err) {
        if (err instanceof KeyProviderError) throw err;
        throw fail((err as Error).message, err);
      }
    },
  };
}
