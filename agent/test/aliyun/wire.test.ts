/** Known-answer tests for the Alibaba Cloud wire formats, checked against published vectors and openssl. */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadClientKey, parseClientKeyFile } from "../../src/aliyun/client-key.ts";
import { GetSecretValueRequest, GetSecretValueResponse } from "../../src/aliyun/dkms-proto.ts";
import { AliyunError } from "../../src/aliyun/errors.ts";
import { signedHeaders, stringToSign } from "../../src/aliyun/instance-api.ts";
import { percentEncode, rpcSignature, rpcTimestamp } from "../../src/aliyun/rpc.ts";
import { stsEndpoint } from "../../src/aliyun/sts.ts";
import { testMaterial } from "./world.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex").toUpperCase();

describe("dkms_api protobuf", () => {
  test("GetSecretValueRequest encodes as in the protocol notes (empty strings omitted)", () => {
    expect(hex(GetSecretValueRequest.encode({ SecretName: "my-secret", FetchExtendedConfig: true }))).toBe(
      "0A096D792D7365637265742001",
    );
  });

  test("GetSecretValueResponse decodes SecretData and skips unknown fields", () => {
    // field 3 "abc", field 5 (repeated) "ACSCurrent", unknown field 99 varint 7, field 8 "rid"
    const bytes = Buffer.from("1A036162632A0A414353437572726" + "56E74" + "98060742" + "03726964", "hex");
    const r = GetSecretValueResponse.decode(bytes);
    expect(r.SecretData).toBe("abc");
    expect(r.VersionStages).toEqual(["ACSCurrent"]);
    expect(r.RequestId).toBe("rid");
  });
});

describe("RPC signature (SignatureVersion 1.0, HMAC-SHA1)", () => {
  test("matches the example in Alibaba Cloud's signature documentation", () => {
    const params = {
      Timestamp: "2016-02-23T12:46:24Z",
      Format: "XML",
      AccessKeyId: "testid",
      Action: "DescribeRegions",
      SignatureMethod: "HMAC-SHA1",
      SignatureNonce: "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
      Version: "2014-05-26",
      SignatureVersion: "1.0",
    };
    expect(rpcSignature("GET", params, "testsecret")).toBe("OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
  });

  test("percent-encoding is RFC 3986 with upper-case hex", () => {
    expect(percentEncode("a b*c~d'(!)/é")).toBe("a%20b%2Ac~d%27%28%21%29%2F%C3%A9");
  });

  test("timestamps are whole-second UTC", () => {
    expect(rpcTimestamp(new Date("2025-01-02T03:04:05.678Z"))).toBe("2025-01-02T03:04:05Z");
  });

  test("STS endpoint per region, central for the finance regions", () => {
    expect(stsEndpoint("cn-beijing")).toBe("https://sts.cn-beijing.aliyuncs.com/");
    expect(stsEndpoint("cn-shenzhen-finance-1")).toBe("https://sts.aliyuncs.com/");
  });
});

describe("KMS instance request signature", () => {
  test("string-to-sign layout: method, Content-Sha256, type, Date, sorted x-kms-* headers, path", () => {
    const s = stringToSign("ABCD", "Tue, 02 Jan 2024 03:04:05 GMT", {
      "x-kms-signaturemethod": "RSA_PKCS1_SHA_256",
      "X-Kms-ApiName": " GetSecretValue ",
      "x-kms-acccesskeyid": "KAAP.1",
      "x-kms-apiversion": "dkms-gcs-0.2",
      date: "ignored",
    });
    expect(s).toBe(
      "POST\nABCD\napplication/x-protobuf\nTue, 02 Jan 2024 03:04:05 GMT\n" +
        "x-kms-acccesskeyid:KAAP.1\nx-kms-apiname:GetSecretValue\nx-kms-apiversion:dkms-gcs-0.2\nx-kms-signaturemethod:RSA_PKCS1_SHA_256\n/",
    );
  });

  test("the PKCS#12 client key signs; openssl verifies with the client certificate", async () => {
    const m = testMaterial();
    const key = await loadClientKey(
      parseClientKeyFile(m.clientKey.json, "client_key"),
      m.clientKey.passwordFile,
    );
    expect(key.keyId).toBe(m.clientKey.keyId);
    expect(key.subject).toBe(`${m.kmsInstanceId}-client`);
    const body = GetSecretValueRequest.encode({ SecretName: "disk-key", FetchExtendedConfig: true });
    const h = signedHeaders(key, "GetSecretValue", body, new Date("2024-01-02T03:04:05Z"));
    expect(h.date).toBe("Tue, 02 Jan 2024 03:04:05 GMT");
    expect(h["content-sha256"]).toBe(new Bun.CryptoHasher("sha256").update(body).digest("hex").toUpperCase());
    const dir = mkdtempSync(join(tmpdir(), "h7-sig-"));
    try {
      writeFileSync(join(dir, "cert.pem"), m.clientKey.certPem);
      writeFileSync(join(dir, "sig"), Buffer.from(h.authorization!.replace(/^Bearer /, ""), "base64"));
      writeFileSync(join(dir, "data"), stringToSign(h["content-sha256"]!, h.date!, h));
      const pub = Bun.spawnSync(["openssl", "x509", "-in", "cert.pem", "-pubkey", "-noout"], { cwd: dir });
      writeFileSync(join(dir, "pub.pem"), pub.stdout);
      const v = Bun.spawnSync(
        ["openssl", "dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig", "data"],
        { cwd: dir },
      );
      expect(v.stdout.toString().trim()).toBe("Verified OK");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a wrong password is reported as such, without the password", async () => {
    const m = testMaterial();
    const file = parseClientKeyFile(m.clientKey.json, "client_key");
    const err = await loadClientKey(file, "not-the-password").catch((e) => e);
    expect(String(err.message)).toContain("client_key_password does not unlock");
    expect(String(err.message)).toContain(m.clientKey.keyId);
    expect(String(err.message)).not.toContain("not-the-password");
  });

  test("malformed client key JSON names the source", () => {
    expect(() => parseClientKeyFile('{"KeyId":"KAAP.1"}', "/etc/cryptpilot/clientKey.json")).toThrow(
      /clientKey\.json must be a JSON object with string fields "KeyId" and "PrivateKeyData"/,
    );
  });
});

describe("error classification", () => {
  const err = (d: Partial<ConstructorParameters<typeof AliyunError>[0]>) =>
    new AliyunError({ kind: "http", endpoint: "https://e/", action: "GetSecretValue", ...d });
  test.each([
    [{ kind: "network" as const }, true],
    [{ kind: "timeout" as const }, true],
    [{ kind: "tls" as const }, false],
    [{ status: 503, code: "ServiceUnavailableTemporary" }, true],
    [{ status: 500 }, true],
    [{ status: 429, code: "Rejected.Throttling" }, true],
    [{ status: 400, code: "Throttling.User" }, true],
    [{ status: 401, code: "SignatureNotMatch" }, false],
    [{ status: 400, code: "InvalidSecurityToken.Expired" }, false],
    [{ status: 404, code: "Forbidden.KeyNotFound" }, false],
  ])("%o retryable=%p", (d, retryable) => {
    expect(err(d).retryable).toBe(retryable);
  });

  test("message names endpoint, action, status, code, service message and request id", () => {
    const e = err({ status: 401, code: "SignatureNotMatch", serviceMessage: "bad", requestId: "r1" });
    expect(e.message).toBe("GetSecretValue at https://e/: HTTP 401 SignatureNotMatch: bad (request id r1)");
    expect(e.hint).toContain("signature");
  });
});
