/**
 * oidc: the volume key is a KMS secret read with credentials obtained from an OIDC token. The
 * token command prints an id_token; STS AssumeRoleWithOIDC trades it for temporary credentials of
 * the configured RAM role; KMS GetSecretValue on the shared gateway, signed with them, returns the
 * secret. Upstream cryptpilot routes this through confidential-data-hub; we speak to STS and KMS
 * directly (same requests), and the passphrase is the raw SecretData bytes, as upstream.
 */
import { getSecretValueRpc, kmsEndpoint } from "../aliyun/kms-rpc.ts";
import { assumeRoleWithOidc, stsEndpoint } from "../aliyun/sts.ts";
import type { OidcConfig } from "../config/providers.ts";
import { ConfigError, FdeError, KeyProviderError } from "../errors.ts";
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
   * Runs the token command without a shell. Not through command.ts's run(): that logs argv in
   * verbose mode, and a token may be passed as an argument.
   */
  async function token(): Promise<string> {
    let proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
    try {
      proc = Bun.spawn([command, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    } catch (cause) {
      throw fail(`the token command ${command} could not be started: ${(cause as Error).message}`, cause);
    }
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      proc.kill("SIGKILL");
    }, timeoutMs);
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]).finally(() => clearTimeout(timer));
    const detail = stderr.trim() ? `: ${stderr.trim().split("\n").slice(-3).join(" / ")}` : "";
    if (timedOut) throw fail(`the token command ${command} did not finish within ${timeoutMs} ms${detail}`);
    if (code !== 0) throw fail(`the token command ${command} exited with code ${code}${detail}`);
    // cryptpilot sends stdout untrimmed; a trailing newline is not part of a JWT.
    const jwt = stdout.trim();
    if (!jwt) throw fail(`the token command ${command} printed nothing${detail}`);
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
