/**
 * Independent clients against our test servers: Alibaba's own npm SDKs (@alicloud/sts20150401,
 * @alicloud/kms20160120) must be accepted exactly like our client. If the servers' signature or
 * parameter checks drifted from the real services, these official clients would be refused.
 * (No official npm SDK exists for the KMS instance API; its checks are covered by the spec's test
 * vectors in wire.test.ts.)
 */
import { describe, expect, test } from "bun:test";
import Kms, { GetSecretValueRequest } from "@alicloud/kms20160120";
import { Config } from "@alicloud/openapi-core/dist/utils";
import { Config as RpcConfig } from "@alicloud/rpc-client";
import Sts, { AssumeRoleWithOIDCRequest } from "@alicloud/sts20150401";
import { OIDC_PROVIDER_ARN, ROLE_ARN, useWorld } from "./world.ts";

const env = useWorld();
const hostOf = (url: string) => new URL(url).host;

async function sdkAssumeRole(token: string) {
  const sts = new Sts(
    new Config({ endpoint: hostOf(env.world.url("sts")), protocol: "http", regionId: env.world.regionId }),
  );
  return sts.assumeRoleWithOIDC(
    new AssumeRoleWithOIDCRequest({
      roleArn: ROLE_ARN,
      OIDCProviderArn: OIDC_PROVIDER_ARN,
      OIDCToken: token,
      roleSessionName: "sdk-check",
    }),
  );
}

/** The official KMS SDK client signing with STS credentials (`tamper` spoils the secret). */
function sdkKms(c: { accessKeyId?: string; accessKeySecret?: string; securityToken?: string }, tamper = "") {
  return new Kms(
    new RpcConfig({
      endpoint: hostOf(env.world.url("kms")),
      protocol: "http",
      regionId: env.world.regionId,
      accessKeyId: c.accessKeyId,
      accessKeySecret: `${c.accessKeySecret}${tamper}`,
      securityToken: c.securityToken,
      type: "sts",
    }),
  );
}

describe("official Alibaba Cloud SDKs against the test servers", () => {
  test("@alicloud/sts20150401 AssumeRoleWithOIDC, then @alicloud/kms20160120 GetSecretValue with the STS credentials", async () => {
    const res = await sdkAssumeRole(await env.issuer.token());
    const c = res.body!.credentials!;
    expect(c.accessKeyId).toStartWith("STS.");
    expect(res.body!.assumedRoleUser!.arn).toContain("assumed-role/testoidc/sdk-check");

    const kms = sdkKms(c);
    const secret = await kms.getSecretValue(new GetSecretValueRequest({ secretName: "oidc-key" }));
    expect(secret.secretData).toBe("delta passphrase");
    const accepted = env.world.requests.filter((r) => r.service === "kms" && r.status === 200);
    expect(accepted.at(-1)?.params?.SignatureMethod).toBe("HMAC-SHA1");
  });

  test("the servers reject the SDK's requests for the same reasons the real services would", async () => {
    const expired = env.issuer.token({ exp: Math.floor(Date.now() / 1000) - 60 });
    await expect(sdkAssumeRole(await expired)).rejects.toThrow(/AuthenticationFail\.OIDCToken\.Expired/);

    const c = (await sdkAssumeRole(await env.issuer.token())).body!.credentials!;
    const kms = sdkKms(c, "tampered");
    await expect(kms.getSecretValue(new GetSecretValueRequest({ secretName: "oidc-key" }))).rejects.toThrow(
      /SignatureDoesNotMatch/,
    );
  });
});
