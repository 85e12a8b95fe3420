/**
 * Fault modes of every test service, seen through our clients (short backoff, same retry rules),
 * and the servers' replay/skew checks exercised with hand-built requests.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import type { FaultMode, Service } from "../../../vm-test/aliyun/servers.ts";
import { type ClientKey, loadClientKey, parseClientKeyFile } from "../../src/aliyun/client-key.ts";
import { GetSecretValueRequest } from "../../src/aliyun/dkms-proto.ts";
import { AliyunError } from "../../src/aliyun/errors.ts";
import { Imds } from "../../src/aliyun/imds.ts";
import { getSecretValue, signedHeaders } from "../../src/aliyun/instance-api.ts";
import { getSecretValueRpc } from "../../src/aliyun/kms-rpc.ts";
import { percentEncode, rpcSignature, rpcTimestamp, type StsCredentials } from "../../src/aliyun/rpc.ts";
import { assumeRoleWithOidc } from "../../src/aliyun/sts.ts";
import { FAST_RETRY, OIDC_PROVIDER_ARN, ROLE_ARN, testMaterial, useWorld } from "./world.ts";

const env = useWorld({ slowMs: 2500 });
let key: ClientKey;
let creds: StsCredentials;

beforeAll(async () => {
  const m = testMaterial();
  key = await loadClientKey(parseClientKeyFile(m.clientKey.json, "client_key"), m.clientKey.password);
  creds = await sts();
});

async function sts(): Promise<StsCredentials> {
  return assumeRoleWithOidc({
    endpoint: env.world.url("sts"),
    roleArn: ROLE_ARN,
    oidcProviderArn: OIDC_PROVIDER_ARN,
    oidcToken: await env.issuer.token(),
    retry: FAST_RETRY,
  });
}

const calls: Record<Service, () => Promise<unknown>> = {
  instance: () =>
    getSecretValue(
      { endpoint: env.world.url("instance"), caPem: testMaterial().caPem, key, retry: FAST_RETRY },
      "disk-key",
    ),
  kms: () =>
    getSecretValueRpc(
      { endpoint: env.world.url("kms"), regionId: "cn-beijing", credentials: creds, retry: FAST_RETRY },
      "disk-key",
    ),
  sts,
  imds: () => new Imds(env.world.url("imds"), FAST_RETRY).regionId(),
};

async function rejection(service: Service): Promise<AliyunError> {
  const err = await calls[service]().then(
    () => undefined,
    (e) => e,
  );
  expect(err).toBeInstanceOf(AliyunError);
  return err as AliyunError;
}

const expected: Record<Exclude<FaultMode, "bad-signature" | "expired-token">, Record<Service, RegExp>> = {
  down: {
    instance:
      /GetSecretValue at https:\/\/127\.0\.0\.1:\d+\/: cannot connect \(.*\) \(gave up after 3 attempts\)/,
    kms: /GetSecretValue at http:\/\/127\.0\.0\.1:\d+\/: cannot connect .* \(gave up after 3 attempts\)/,
    sts: /AssumeRoleWithOIDC at http:\/\/127\.0\.0\.1:\d+\/: cannot connect .* \(gave up after 3 attempts\)/,
    imds: /PUT \/latest\/api\/token at http:\/\/127\.0\.0\.1:\d+: cannot connect .* \(gave up after 3 attempts\)/,
  },
  // The timeout path is the same for every service; the others get a one-off slow answer below.
  slow: {
    instance: /GetSecretValue at .*: timed out: no reply within 1500 ms \(gave up after 3 attempts\)/,
  } as Record<Service, RegExp>,
  "5xx": {
    instance:
      /HTTP 503 ServiceUnavailableTemporary: Service is temporarily unavailable\. \(request id .*\) \(gave up after 3 attempts\)/,
    kms: /HTTP 503 ServiceUnavailable: The request has failed due to a temporary failure of the server\. .*\(gave up after 3 attempts\)/,
    sts: /HTTP 503 ServiceUnavailable: .*\(gave up after 3 attempts\)/,
    imds: /PUT \/latest\/api\/token at .*: HTTP 500 \(gave up after 3 attempts\)/,
  },
  throttle: {
    instance: /HTTP 429 Rejected\.Throttling: QPS Limit Exceeded .*\(gave up after 3 attempts\)/,
    kms: /HTTP 400 Throttling\.User: Request was denied due to user flow control\. .*\(gave up after 3 attempts\)/,
    sts: /HTTP 400 Throttling\.User: .*\(gave up after 3 attempts\)/,
    // IMDS throttling on the token request: the client falls back to IMDSv1, which is throttled too.
    imds: /GET \/latest\/meta-data\/region-id at .*: HTTP 429 \(gave up after 3 attempts\)/,
  },
};

describe("fault modes: bounded retries and clear errors", () => {
  for (const [mode, perService] of Object.entries(expected)) {
    for (const [service, pattern] of Object.entries(perService)) {
      test(`${service} ${mode}`, async () => {
        env.world.setFault(service as Service, { mode: mode as FaultMode });
        try {
          const err = await rejection(service as Service);
          expect(err.message).toMatch(pattern);
          expect(err.attempts).toBe(3);
        } finally {
          env.world.setFault(service as Service, undefined);
        }
        // Service back to normal: the same call succeeds.
        await calls[service as Service]();
      }, 15_000);
    }
  }

  test("a fault that clears within the retry budget is ridden out", async () => {
    for (const service of ["instance", "kms", "sts", "imds"] as const) {
      env.world.setFault(service, { mode: "5xx", times: 2 });
      await calls[service]();
    }
  });

  test("one slow answer (timeout) is retried: kms, sts, imds", async () => {
    for (const service of ["kms", "sts", "imds"] as const) {
      env.world.setFault(service, { mode: "slow", times: 1 });
      const before = env.world.requests.length;
      await calls[service]();
      expect(env.world.requests.length).toBeGreaterThan(before);
    }
  }, 15_000);

  test("bad signature is not retried (instance, gateway)", async () => {
    for (const [service, code] of [
      ["instance", "HTTP 401 SignatureNotMatch"],
      [
        "kms",
        "HTTP 400 SignatureDoesNotMatch: Specified signature is not matched with our calculation. (request id",
      ],
    ] as const) {
      env.world.setFault(service, { mode: "bad-signature" });
      try {
        const err = await rejection(service);
        expect(err.message).toContain(code);
        expect(err.attempts).toBe(1);
        // The gateway echoes its string-to-sign, which holds the security token: not in our message.
        expect(err.message).not.toContain(creds.securityToken.slice(0, 20));
      } finally {
        env.world.setFault(service, undefined);
      }
    }
  });
});

describe("server-side replay and clock checks", () => {
  function signedParams(nonce: string, timestamp = rpcTimestamp()): string {
    const p: Record<string, string> = {
      Action: "GetSecretValue",
      Version: "2016-01-20",
      Format: "JSON",
      RegionId: "cn-beijing",
      SecretName: "disk-key",
      Timestamp: timestamp,
      SignatureMethod: "HMAC-SHA1",
      SignatureVersion: "1.0",
      SignatureNonce: nonce,
      AccessKeyId: creds.accessKeyId,
      SecurityToken: creds.securityToken,
    };
    p.Signature = rpcSignature("POST", p, creds.accessKeySecret);
    return Object.entries(p)
      .map(([k, v]) => `${percentEncode(k)}=${percentEncode(v)}`)
      .join("&");
  }
  const post = async (query: string) => {
    const res = await fetch(`${env.world.url("kms")}?${query}`, { method: "POST" });
    return { status: res.status, body: (await res.json()) as Record<string, string> };
  };

  test("a replayed gateway request (same SignatureNonce) is refused", async () => {
    const q = signedParams(crypto.randomUUID());
    expect((await post(q)).status).toBe(200);
    const again = await post(q);
    expect(again).toMatchObject({ status: 400, body: { Code: "SignatureNonceUsed" } });
  });

  test("a gateway request signed 20 minutes ago is refused", async () => {
    const old = await post(
      signedParams(crypto.randomUUID(), rpcTimestamp(new Date(Date.now() - 20 * 60_000))),
    );
    expect(old).toMatchObject({ status: 400, body: { Code: "InvalidTimeStamp.Expired" } });
  });

  test("tampering with a signed parameter breaks the signature", async () => {
    const q = signedParams(crypto.randomUUID()).replace("SecretName=disk-key", "SecretName=oidc-key");
    expect(await post(q)).toMatchObject({ status: 400, body: { Code: "SignatureDoesNotMatch" } });
  });

  test("an instance request with a Date 20 minutes off is refused (RequestTimeTooSkewed)", async () => {
    const body = GetSecretValueRequest.encode({ SecretName: "disk-key", FetchExtendedConfig: true });
    const headers = signedHeaders(key, "GetSecretValue", body, new Date(Date.now() - 20 * 60_000));
    const res = await fetch(env.world.url("instance"), {
      method: "POST",
      headers,
      body,
      tls: { ca: testMaterial().caPem },
    } as RequestInit);
    expect(res.status).toBe(400);
    expect(new TextDecoder().decode(await res.bytes())).toContain("RequestTimeTooSkewed");
  });

  test("an instance request whose body does not match Content-Sha256 is refused", async () => {
    const body = GetSecretValueRequest.encode({ SecretName: "disk-key", FetchExtendedConfig: true });
    const headers = signedHeaders(key, "GetSecretValue", body);
    const other = GetSecretValueRequest.encode({ SecretName: "oidc-key", FetchExtendedConfig: true });
    const res = await fetch(env.world.url("instance"), {
      method: "POST",
      headers,
      body: other,
      tls: { ca: testMaterial().caPem },
    } as RequestInit);
    expect(res.status).toBe(401);
  });
});
