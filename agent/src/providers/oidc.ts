/**
 * oidc: the volume key is a KMS secret read with credentials obtained from an OIDC token. The
 * token command prints an id_token; STS AssumeRoleWithOIDC trades it for temporary credentials of
 * the configured RAM role; KMS GetSecretValue on the shared gateway, signed with them, returns the
 * secret. Upstream cryptpilot routes this through confidential-data-hub; we speak to STS and KMS
 * directly (same requests), and the passphrase is the raw SecretData bytes, as upstream.
 */
import { getSecretValueRpc, kmsEndpoint } from "../aliyun/kms-rpc.ts";
import { assumeRoleWithOidc, stsEndpoint } from "../aliyun/sts.ts";
import { run } from "../command.ts";
import type { OidcConfig } from "../config/providers/oidc.ts";
import { CommandError, ConfigError, FdeError, KeyProviderError } from "../errors.ts";
import { stderrDetail } from "../subprocess.ts";
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

  /** Runs the token command through run(), quiet: a token may be passed as an argument. */
  async function token(): Promise<string> {
    const label = `the token command ${command}`;
    let stdout: Uint8Array;
    let stderr: string;
    try {
      ({ stdout, stderr } = await run(command, args, {
        quiet: true,
        label: `oidc key provider: ${label}`,
        timeoutMs,
        // A JWT is held to the bound of a key: anything longer is not a token.
        maxStdout: MAX_KEY_BYTES,
        requireCompleteOutput: true,
      }));
    } catch (e) {
      if (!(e instanceof CommandError)) throw e;
      const detail = stderrDetail(e.stderr, 3);
      switch (e.failure) {
        case "start":
          throw fail(`${label} could not be started: ${e.reason}`);
        case "timeout":
          throw fail(`${label} did not finish within ${timeoutMs} ms${detail}`);
        case "overflow":
          throw fail(`${label} printed more than ${MAX_KEY_BYTES} bytes; that is not a token`);
        case "leftovers":
          throw fail(
            `${label} left process(es) ${e.leftovers.join(", ")} holding its stdout after it exited (killed); ` +
              "the token may be incomplete",
          );
        case "exit":
          throw fail(
            `${label} ${e.code === null ? `was killed by ${e.signal}` : `exited with code ${e.code}`}${detail}`,
          );
      }
    }
    // cryptpilot sends stdout untrimmed; a trailing newline is not part of a JWT.
    const jwt = new TextDecoder().decode(stdout).trim();
    stdout.fill(0);
    if (!jwt) throw fail(`${label} printed nothing${stderrDetail(stderr, 3)}`);
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
