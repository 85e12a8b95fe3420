/**
 * Alibaba Cloud test servers on 127.0.0.1: a KMS instance endpoint (HTTPS, instance CA), STS, the
 * shared KMS gateway and ECS IMDS. They check what the real services check — client-key RSA
 * signatures against the certificate registered for the KeyId, RPC HMAC-SHA1 signatures against the
 * issued STS secret, Date/Timestamp skew, nonce replay, security-token validity and expiry, the
 * OIDC token's signature/issuer/audience/expiry and the role's trust in the OIDC provider — and
 * answer with the real success and error shapes. The signature checks are written independently
 * of agent/src/aliyun (own canonicalisation and encoders) so a shared bug cannot hide.
 *
 * Fault modes make one service misbehave for the next N requests (or until cleared): down, slow,
 * 5xx, throttle, bad-signature, expired-token.
 */
import { createHmac, createPublicKey, type KeyObject, randomBytes, randomUUID, verify } from "node:crypto";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import type { Server } from "bun";
import { createLocalJWKSet, decodeProtectedHeader, type JWK, errors as joseErrors, jwtVerify } from "jose";
import type { Material } from "./material.ts";

export type Service = "instance" | "sts" | "kms" | "imds";
export type FaultMode = "down" | "slow" | "5xx" | "throttle" | "bad-signature" | "expired-token";
export interface Fault {
  mode: FaultMode;
  /** How many requests it affects; until cleared when absent. Ignored for "down". */
  times?: number;
}

export interface OidcProviderSetup {
  arn: string;
  issuer: string;
  /** Accepted `aud` values ("ClientIds"). */
  clientIds: string[];
  /** Public JWK(s) the provider's tokens are signed with. */
  jwks: JWK[];
}

export interface WorldOptions {
  material: Material;
  /** Secret name -> SecretData, readable through both the instance and the shared gateway. */
  secrets: Record<string, string>;
  /** Secrets that exist but that no credential may read (Forbidden.*). */
  forbiddenSecrets?: string[];
  regionId?: string;
  oidcProvider?: OidcProviderSetup;
  /** RAM role ARN -> OIDC provider ARN it trusts. */
  roles?: Record<string, string>;
  /** RAM roles bound to the ECS instance (IMDS); the first maps to the first `roles` entry. */
  ecsRoles?: string[];
  /** Refuse IMDSv1 requests (security-hardened instance). */
  imdsRequireV2?: boolean;
  /** Old IMDS without the token endpoint (404 on PUT /latest/api/token). */
  imdsWithoutV2?: boolean;
  /** The instance's user data at GET /latest/user-data (404 when absent, as ECS answers). */
  userData?: string;
  /** The instance endpoint demands a TLS client certificate issued by the instance CA. */
  instanceRequireClientCert?: boolean;
  /** Delay of the "slow" fault. */
  slowMs?: number;
  /** Fixed port of the instance endpoint (443: its default URL needs no port); any free one if absent. */
  instancePort?: number;
}

export interface RequestRecord {
  service: Service;
  action: string;
  status: number;
  headers: Record<string, string>;
  params?: Record<string, string>;
}

interface IssuedCredential {
  secret: string;
  token: string;
  expires: number;
  roleArn: string;
}

const SKEW_MS = 15 * 60 * 1000;

export class AliyunWorld {
  readonly requests: RequestRecord[] = [];
  readonly regionId: string;
  private readonly servers = new Map<Service, Server<unknown>>();
  private readonly ports = new Map<Service, number>();
  private readonly faults = new Map<Service, Fault>();
  private readonly credentials = new Map<string, IssuedCredential>();
  private readonly nonces = new Map<string, number>();
  private readonly imdsTokens = new Map<string, number>();
  private readonly clientCertKey: KeyObject;
  private readonly wrongKey: KeyObject;

  constructor(private readonly o: WorldOptions) {
    this.regionId = o.regionId ?? "cn-beijing";
    this.clientCertKey = createPublicKey(o.material.clientKey.certPem);
    // What the instance believes the key is under the "bad-signature" fault: the server certificate.
    this.wrongKey = createPublicKey(o.material.serverCertPem);
  }

  static async start(o: WorldOptions): Promise<AliyunWorld> {
    const w = new AliyunWorld(o);
    for (const s of ["instance", "sts", "kms", "imds"] as const)
      w.listen(s, s === "instance" ? (o.instancePort ?? 0) : 0);
    return w;
  }

  /** Base URL of a service, e.g. "https://127.0.0.1:40123/". */
  url(service: Service): string {
    const scheme = service === "instance" ? "https" : "http";
    return `${scheme}://127.0.0.1:${this.ports.get(service)}${service === "imds" ? "" : "/"}`;
  }

  port(service: Service): number {
    return this.ports.get(service)!;
  }

  setFault(service: Service, fault: Fault | undefined): void {
    if (fault?.mode === "down") {
      this.servers.get(service)?.stop(true);
      this.servers.delete(service);
    } else if (!this.servers.has(service)) {
      this.listen(service, this.ports.get(service)!);
    }
    if (fault) this.faults.set(service, fault);
    else this.faults.delete(service);
  }

  /** The RAM role ARN an ECS role name maps to (for permission checks on IMDS credentials). */
  private ecsRoleArn(name: string): string {
    return `acs:ram::1234567890:role/${name.toLowerCase()}`;
  }

  /** Set or clear (undefined) the instance's user data, as the console's "modify user data" does. */
  setUserData(text: string | undefined): void {
    this.o.userData = text;
  }

  stop(): void {
    for (const s of this.servers.values()) s.stop(true);
    this.servers.clear();
  }

  private listen(service: Service, port: number): void {
    const handler = {
      instance: (r: Request, f?: FaultMode) => this.instance(r, f),
      sts: (r: Request, f?: FaultMode) => this.sts(r, f),
      kms: (r: Request, f?: FaultMode) => this.kms(r, f),
      imds: (r: Request, f?: FaultMode) => this.imds(r, f),
    }[service];
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port,
      idleTimeout: 60,
      ...(service === "instance" ? { tls: this.instanceTls() } : {}),
      fetch: async (req) => {
        const fault = this.takeFault(service);
        if (fault === "slow") await Bun.sleep(this.o.slowMs ?? 3000);
        return handler(req, fault);
      },
    });
    this.servers.set(service, server);
    this.ports.set(service, server.port!);
  }

  private instanceTls() {
    const { serverCertPem: cert, serverKeyPem: key, caPem: ca } = this.o.material;
    if (!this.o.instanceRequireClientCert) return { cert, key };
    return { cert, key, ca, requestCert: true, rejectUnauthorized: true };
  }

  /** Consumes one use of the service's fault. */
  private takeFault(service: Service): FaultMode | undefined {
    const f = this.faults.get(service);
    if (!f) return undefined;
    if (f.times !== undefined) {
      if (f.times <= 1) this.faults.delete(service);
      else f.times--;
    }
    return f.mode;
  }

  private record(
    service: Service,
    action: string,
    req: Request,
    status: number,
    params?: Record<string, string>,
  ): void {
    this.requests.push({ service, action, status, headers: Object.fromEntries(req.headers), params });
  }

  // -------------------------------------------------------------------------------------------
  // KMS instance endpoint: protobuf over HTTPS, x-kms-* headers, RSA_PKCS1_SHA_256.

  private async instance(req: Request, fault?: FaultMode): Promise<Response> {
    const body = new Uint8Array(await req.arrayBuffer());
    const h = (n: string) => req.headers.get(n) ?? "";
    const apiName = h("x-kms-apiname");
    const fail = (status: number, code: string, message: string) => {
      this.record("instance", apiName, req, status);
      return protoError(status, code, message);
    };
    if (fault === "5xx")
      return fail(503, "ServiceUnavailableTemporary", "Service is temporarily unavailable.");
    if (fault === "throttle") return fail(429, "Rejected.Throttling", "QPS Limit Exceeded");
    if (req.method !== "POST" || new URL(req.url).pathname !== "/")
      return fail(404, "InvalidApiName", "Only POST / is served.");
    if (body.length > 3 * 1024 * 1024) return fail(413, "InvalidParameter", "Request body exceeds 3 MB.");
    if (h("content-type") !== "application/x-protobuf")
      return fail(415, "InvalidContentType", "Content-Type must be application/x-protobuf.");
    if (h("x-kms-apiversion") !== "dkms-gcs-0.2")
      return fail(400, "InvalidApiVersion", `The api version '${h("x-kms-apiversion")}' is invalid.`);
    if (apiName !== "GetSecretValue")
      return fail(400, "InvalidApiName", `The api name '${apiName}' is invalid.`);
    if (h("x-kms-signaturemethod") !== "RSA_PKCS1_SHA_256")
      return fail(400, "InvalidParam", "The x-kms-signaturemethod is invalid.");
    const date = Date.parse(h("date"));
    if (!/GMT$/.test(h("date")) || Number.isNaN(date))
      return fail(400, "InvalidParam", "The Date header is invalid.");
    if (Math.abs(Date.now() - date) > SKEW_MS)
      return fail(
        400,
        "RequestTimeTooSkewed",
        "The difference between the request time and the server's time is too large.",
      );
    const keyId = h("x-kms-acccesskeyid");
    if (!keyId) return fail(400, "MissingParameter", "The x-kms-acccesskeyid header is missing.");
    if (keyId !== this.o.material.clientKey.keyId)
      return fail(404, "Unauthorized", `The AccessKey ID ${keyId} does not exist.`);
    const digest = new Bun.CryptoHasher("sha256").update(body).digest("hex").toUpperCase();
    const auth = /^Bearer (.+)$/.exec(h("authorization"));
    const key = fault === "bad-signature" ? this.wrongKey : this.clientCertKey;
    if (
      h("content-sha256") !== digest ||
      !auth ||
      !verify("sha256", Buffer.from(instanceStringToSign(req)), key, Buffer.from(auth[1]!, "base64"))
    ) {
      return fail(401, "SignatureNotMatch", "The request signature does not match.");
    }
    let request: { name: string; stage: string; versionId: string };
    try {
      request = readGetSecretValueRequest(body);
    } catch {
      return fail(400, "InvalidParameter", "The request body cannot be parsed.");
    }
    if (!request.name) return fail(400, "MissingParameter", "The parameter SecretName is missing.");
    if (this.o.forbiddenSecrets?.includes(request.name))
      return fail(
        403,
        "Forbidden.NoPermission",
        "This operation is forbidden by the application access point policy.",
      );
    const data = this.o.secrets[request.name];
    if (data === undefined)
      return fail(404, "Forbidden.KeyNotFound", `The specified secret ${request.name} is not found.`);
    this.record("instance", apiName, req, 200);
    return new Response(writeGetSecretValueResponse(request.name, data, randomUUID()), {
      headers: { "content-type": "application/x-protobuf", "x-kms-requestid": randomUUID() },
    });
  }

  // -------------------------------------------------------------------------------------------
  // STS (RPC, anonymous AssumeRoleWithOIDC).

  private async sts(req: Request, fault?: FaultMode): Promise<Response> {
    const params = await rpcParams(req);
    const action = params.Action ?? req.headers.get("x-acs-action") ?? "";
    const fail = (status: number, code: string, message: string) => {
      this.record("sts", action, req, status, params);
      return rpcError(status, code, message, "sts.aliyuncs.com");
    };
    const common = this.rpcCommon(req, params, "2015-04-01", ["AssumeRoleWithOIDC"], fault);
    if (common) return fail(...common);
    for (const p of ["RoleArn", "OIDCProviderArn", "OIDCToken", "RoleSessionName"]) {
      if (!params[p])
        return fail(
          400,
          `MissingParameter`,
          `The input parameter "${p}" that is mandatory for processing this request is not supplied.`,
        );
    }
    const provider = this.o.oidcProvider;
    if (!provider || provider.arn !== params.OIDCProviderArn)
      return fail(401, "AuthenticationFail.NoPermission", "No such OIDC Provider registered.");
    const roleTrusts = this.o.roles?.[params.RoleArn!];
    if (roleTrusts === undefined) return fail(404, "EntityNotExist.Role", "The specified Role not exists.");
    if (roleTrusts !== provider.arn)
      return fail(401, "AuthenticationFail.NoPermission", "There is no permission.");
    // Anonymous calls are not signed, but a nonce that is sent is still checked for replay.
    if (params.SignatureNonce && !this.freshNonce(params.SignatureNonce))
      return fail(400, "SignatureNonceUsed", "Specified signature nonce was used already.");
    const duration = Number(params.DurationSeconds ?? 3600);
    if (!Number.isInteger(duration) || duration < 900 || duration > 3600)
      return fail(400, "InvalidParameter.DurationSeconds", "The parameter DurationSeconds is invalid.");
    let claims: Awaited<ReturnType<AliyunWorld["verifyOidcToken"]>>;
    try {
      claims = await this.verifyOidcToken(params.OIDCToken!, provider, fault === "bad-signature");
    } catch (e) {
      const [status, code, message] = e as [number, string, string];
      return fail(status, code, message);
    }
    const cred = this.issue(params.RoleArn!, fault === "expired-token" ? -60 : duration);
    this.record("sts", action, req, 200, params);
    const roleName = params.RoleArn!.split("/").pop();
    return Response.json({
      RequestId: randomUUID(),
      OIDCTokenInfo: {
        Subject: String(claims.sub ?? ""),
        Issuer: String(claims.iss ?? ""),
        ClientIds: [claims.aud].flat().join(","),
        ExpirationTime: isoSeconds((claims.exp ?? 0) * 1000),
        IssuanceTime: isoSeconds((claims.iat ?? 0) * 1000),
        VerificationInfo: "Success",
      },
      AssumedRoleUser: {
        AssumedRoleId: `3${randomDigits(17)}:${params.RoleSessionName}`,
        Arn: `${params.RoleArn!.split(":role/")[0]}:assumed-role/${roleName}/${params.RoleSessionName}`,
      },
      Credentials: {
        AccessKeyId: cred.id,
        AccessKeySecret: cred.secret,
        SecurityToken: cred.token,
        Expiration: isoSeconds(cred.expires),
      },
    });
  }

  private async verifyOidcToken(
    token: string,
    provider: OidcProviderSetup,
    wrongKeys: boolean,
  ): Promise<{ sub?: string; iss?: string; aud?: string | string[]; exp?: number; iat?: number }> {
    if (token.split(".").length !== 3)
      throw [
        401,
        "AuthenticationFail.OIDCToken.Invalid",
        "The number of Jwt field should be divided into 3 parts with '.' .",
      ];
    let alg: string | undefined;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      throw [
        401,
        "AuthenticationFail.OIDCToken.Invalid",
        "The Jwt content is invalid that cannot be recognized.",
      ];
    }
    if (!alg || !/^(RS|PS|ES)(256|384|512)$/.test(alg))
      throw [
        401,
        "AuthenticationFail.OIDCToken.Invalid",
        `The algorithm ${alg} that be specified in Jwt header is unknown.`,
      ];
    try {
      const keys = createLocalJWKSet({ keys: wrongKeys ? [] : provider.jwks });
      const { payload } = await jwtVerify(token, keys, { clockTolerance: 0 });
      if (payload.iss !== provider.issuer)
        throw [401, "AuthenticationFail.OIDCToken.IssuerNotMatch", "Invalid issuer."];
      const aud = [payload.aud ?? []].flat();
      if (!aud.some((a) => provider.clientIds.includes(a)))
        throw [401, "AuthenticationFail.OIDCToken.AudienceNotMatch", "Invalid audience."];
      return payload as never;
    } catch (e) {
      if (Array.isArray(e)) throw e;
      if (e instanceof joseErrors.JWTExpired)
        throw [401, "AuthenticationFail.OIDCToken.Expired", "This JsonWebToken is expired."];
      throw [
        401,
        "AuthenticationFail.OIDCToken.InvalidSignature",
        "OIDC token validate failed: invalid signature.",
      ];
    }
  }

  private issue(roleArn: string, lifetimeSeconds: number): IssuedCredential & { id: string } {
    const id = `STS.${randomBytes(12).toString("base64url")}`;
    const cred = {
      secret: randomBytes(24).toString("base64url"),
      token: `CAIS${randomBytes(96).toString("base64")}`,
      expires: Date.now() + lifetimeSeconds * 1000,
      roleArn,
    };
    this.credentials.set(id, cred);
    return { id, ...cred };
  }

  // -------------------------------------------------------------------------------------------
  // Shared KMS gateway (RPC, HMAC-SHA1 with SecurityToken).

  private async kms(req: Request, fault?: FaultMode): Promise<Response> {
    const params = await rpcParams(req);
    const action = params.Action ?? "";
    const host = `kms.${this.regionId}.aliyuncs.com`;
    const fail = (status: number, code: string, message: string) => {
      this.record("kms", action, req, status, params);
      return rpcError(status, code, message, host);
    };
    const common = this.rpcCommon(req, params, "2016-01-20", ["GetSecretValue"], fault);
    if (common) return fail(...common);
    const auth = this.rpcAuth(req, params, fault);
    if (typeof auth !== "string") return fail(...auth);
    const name = params.SecretName;
    if (!name)
      return fail(
        400,
        "MissingParameter",
        'The input parameter "SecretName" that is mandatory for processing this request is not supplied.',
      );
    if (this.o.forbiddenSecrets?.includes(name))
      return fail(
        403,
        "Forbidden.RAM",
        "User not authorized to operate on the specified resource, or this API doesn't support RAM.",
      );
    const data = this.o.secrets[name];
    if (data === undefined) return fail(404, "Forbidden.ResourceNotFound", "The resource not found.");
    this.record("kms", action, req, 200, params);
    return Response.json({
      RequestId: randomUUID(),
      SecretName: name,
      SecretType: "Generic",
      SecretData: data,
      SecretDataType: "text",
      VersionId: "v1",
      VersionStages: { VersionStage: ["ACSCurrent"] },
      CreateTime: isoSeconds(Date.now() - 86_400_000),
      ...(params.FetchExtendedConfig === "true" ? { ExtendedConfig: "" } : {}),
    });
  }

  /** Checks shared by every RPC API; returns [status, code, message] on failure. */
  private rpcCommon(
    req: Request,
    p: Record<string, string>,
    version: string,
    actions: string[],
    fault?: FaultMode,
  ): [number, string, string] | undefined {
    if (fault === "5xx")
      return [503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server."];
    if (fault === "throttle") return [400, "Throttling.User", "Request was denied due to user flow control."];
    if (req.method !== "POST" && req.method !== "GET")
      return [405, "UnsupportedHTTPMethod", "This http method is not supported."];
    const v = p.Version ?? req.headers.get("x-acs-version");
    if (!v) return [400, "MissingVersion", "Version is mandatory for this action."];
    if (v !== version) return [400, "InvalidVersion", `Specified parameter Version is not valid.`];
    const action = p.Action ?? req.headers.get("x-acs-action");
    if (!action) return [400, "MissingAction", "Action is mandatory for this request."];
    if (!actions.includes(action))
      return [404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method."];
    if (p.Timestamp !== undefined) {
      if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(p.Timestamp))
        return [400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted."];
      if (Math.abs(Date.now() - Date.parse(p.Timestamp)) > SKEW_MS)
        return [400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."];
    }
    return undefined;
  }

  /** Signature, credential and nonce checks; returns the role ARN or [status, code, message]. */
  private rpcAuth(
    req: Request,
    p: Record<string, string>,
    fault?: FaultMode,
  ): string | [number, string, string] {
    for (const name of ["AccessKeyId", "Signature", "SignatureMethod", "SignatureNonce", "Timestamp"]) {
      if (!p[name]) return [400, `Missing${name}`, `${name} is mandatory for this action.`];
    }
    if (p.SignatureMethod !== "HMAC-SHA1")
      return [400, "InvalidSignatureMethod", "Specified signature method is not valid."];
    if ((p.SignatureVersion ?? "1.0") !== "1.0")
      return [400, "InvalidSignatureVersion", "Specified signature version is not valid."];
    const cred = this.credentials.get(p.AccessKeyId!);
    if (!cred) return [404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."];
    if (!p.SecurityToken) return [400, "MissingSecurityToken", "SecurityToken is mandatory for this action."];
    if (p.SecurityToken !== cred.token)
      return [
        400,
        "InvalidSecurityToken.MismatchWithAccessKey",
        "Specified SecurityToken mismatch with the AccessKey.",
      ];
    if (fault === "expired-token" || Date.now() > cred.expires)
      return [400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired."];
    const toSign = rpcStringToSign(req.method, p);
    const key = fault === "bad-signature" ? `${cred.secret}x&` : `${cred.secret}&`;
    const expected = createHmac("sha1", key).update(toSign).digest("base64");
    if (expected !== p.Signature)
      return [
        400,
        "SignatureDoesNotMatch",
        `Specified signature is not matched with our calculation. server string to sign is:${toSign}`,
      ];
    if (!this.freshNonce(p.SignatureNonce!))
      return [400, "SignatureNonceUsed", "Specified signature nonce was used already."];
    return cred.roleArn;
  }

  /** Remembers nonces for the 15 minutes a Timestamp stays valid; false for a replay. */
  private freshNonce(nonce: string): boolean {
    const now = Date.now();
    for (const [n, at] of this.nonces) if (now - at >= SKEW_MS) this.nonces.delete(n);
    if (this.nonces.has(nonce)) return false;
    this.nonces.set(nonce, now);
    return true;
  }

  // -------------------------------------------------------------------------------------------
  // ECS instance metadata service.

  private async imds(req: Request, fault?: FaultMode): Promise<Response> {
    const path = new URL(req.url).pathname;
    const action = `${req.method} ${path}`;
    const reply = (status: number, body: string, type = "text/plain") => {
      this.record("imds", action, req, status);
      return new Response(body, { status, headers: { "content-type": type } });
    };
    if (fault === "5xx") return reply(500, "Internal Server Error");
    if (fault === "throttle") return reply(429, "Too Many Requests");
    if (path === "/latest/api/token") {
      if (req.method !== "PUT") return reply(405, "Method Not Allowed");
      if (this.o.imdsWithoutV2) return reply(404, "Not Found");
      const ttl = Number(req.headers.get("x-aliyun-ecs-metadata-token-ttl-seconds"));
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21600) return reply(400, "Bad Request");
      const token = randomBytes(32).toString("base64url");
      this.imdsTokens.set(token, Date.now() + ttl * 1000);
      return reply(200, token);
    }
    if (req.method !== "GET") return reply(405, "Method Not Allowed");
    const token = req.headers.get("x-aliyun-ecs-metadata-token");
    if (token !== null) {
      const until = this.imdsTokens.get(token);
      if (until === undefined || Date.now() > until) return reply(401, "Unauthorized");
    } else if (this.o.imdsRequireV2) {
      return reply(403, "Forbidden");
    }
    const roles = this.o.ecsRoles ?? [];
    if (path === "/latest/meta-data/region-id") return reply(200, this.regionId);
    // Served as is (ECS returns the text the instance was given, not Base64).
    if (path === "/latest/user-data") {
      return this.o.userData === undefined ? reply(404, "Not Found") : reply(200, this.o.userData);
    }
    if (path === "/latest/meta-data/ram/security-credentials/") {
      return roles.length ? reply(200, roles.join("\n")) : reply(404, "Not Found");
    }
    const m = /^\/latest\/meta-data\/ram\/security-credentials\/([^/]+)$/.exec(path);
    if (m && roles.includes(decodeURIComponent(m[1]!))) {
      const cred = this.issue(
        this.ecsRoleArn(decodeURIComponent(m[1]!)),
        fault === "expired-token" ? -60 : 3600,
      );
      return reply(
        200,
        JSON.stringify({
          AccessKeyId: cred.id,
          AccessKeySecret: cred.secret,
          Expiration: isoSeconds(cred.expires),
          SecurityToken: cred.token,
          LastUpdated: isoSeconds(Date.now()),
          Code: "Success",
        }),
        "application/json",
      );
    }
    return reply(404, "Not Found");
  }
}

// ---------------------------------------------------------------------------------------------
// Wire helpers (independent of the client's implementation).

/** RFC 3986 byte-wise percent-encoding with upper-case hex. */
function pe(s: string): string {
  let out = "";
  for (const b of new TextEncoder().encode(s)) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9\-_.~]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

function rpcStringToSign(method: string, p: Record<string, string>): string {
  const canonical = Object.keys(p)
    .filter((k) => k !== "Signature")
    .sort()
    .map((k) => `${pe(k)}=${pe(p[k]!)}`)
    .join("&");
  return `${method}&${pe("/")}&${pe(canonical)}`;
}

/** Query parameters merged with a form body, as the RPC gateway reads them. */
async function rpcParams(req: Request): Promise<Record<string, string>> {
  const params: Record<string, string> = Object.fromEntries(new URL(req.url).searchParams);
  if ((req.headers.get("content-type") ?? "").startsWith("application/x-www-form-urlencoded")) {
    Object.assign(params, Object.fromEntries(new URLSearchParams(await req.text())));
  }
  return params;
}

function rpcError(status: number, code: string, message: string, host: string): Response {
  return Response.json(
    {
      RequestId: randomUUID(),
      HostId: host,
      Code: code,
      Message: message,
      Recommend: `https://api.aliyun.com/troubleshoot?q=${code}`,
    },
    { status },
  );
}

function instanceStringToSign(req: Request): string {
  const h = (n: string) => req.headers.get(n) ?? "";
  const kms = [...req.headers.entries()]
    .filter(([k]) => k.toLowerCase().startsWith("x-kms-"))
    .map(([k, v]) => [k.toLowerCase(), v.trim()])
    .sort(([a], [b]) => (a! < b! ? -1 : 1))
    .map(([k, v]) => `${k}:${v}\n`)
    .join("");
  return `${req.method}\n${h("content-sha256")}\n${h("content-type")}\n${h("date")}\n${kms}${new URL(req.url).pathname}`;
}

function readGetSecretValueRequest(body: Uint8Array): { name: string; stage: string; versionId: string } {
  const r = new BinaryReader(body);
  const out = { name: "", stage: "", versionId: "" };
  while (r.pos < r.len) {
    const [no, type] = r.tag();
    if (no === 1 && type === WireType.LengthDelimited) out.name = r.string();
    else if (no === 2 && type === WireType.LengthDelimited) out.stage = r.string();
    else if (no === 3 && type === WireType.LengthDelimited) out.versionId = r.string();
    else r.skip(type, no);
  }
  return out;
}

function writeGetSecretValueResponse(name: string, data: string, requestId: string): Uint8Array {
  const w = new BinaryWriter();
  w.tag(1, WireType.LengthDelimited).string(name);
  w.tag(2, WireType.LengthDelimited).string("Generic");
  w.tag(3, WireType.LengthDelimited).string(data);
  w.tag(4, WireType.LengthDelimited).string("text");
  w.tag(5, WireType.LengthDelimited).string("ACSCurrent");
  w.tag(6, WireType.LengthDelimited).string("v1");
  w.tag(7, WireType.LengthDelimited).string(isoSeconds(Date.now() - 86_400_000));
  w.tag(8, WireType.LengthDelimited).string(requestId);
  return w.finish();
}

function protoError(status: number, code: string, message: string): Response {
  const w = new BinaryWriter();
  w.tag(1, WireType.Varint).int32(status);
  w.tag(2, WireType.LengthDelimited).string(code);
  w.tag(3, WireType.LengthDelimited).string(message);
  w.tag(4, WireType.LengthDelimited).string(randomUUID());
  return new Response(w.finish(), { status, headers: { "content-type": "application/x-protobuf" } });
}

function isoSeconds(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19)}Z`;
}

function randomDigits(n: number): string {
  return Array.from(randomBytes(n), (b) => (b % 10).toString()).join("");
}
