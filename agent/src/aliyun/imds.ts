/**
 * ECS instance metadata service: region, bound RAM role and that role's temporary credentials,
 * and the instance's user data (config/sources/aliyun.ts).
 * Uses IMDSv2 (session token) first, as hardened instances require, and falls back to IMDSv1 when
 * the token endpoint is refused.
 */
import { log } from "../log.ts";
import { text } from "../net/http.ts";
import { ALIYUN_RETRY, type RetryPolicy } from "../net/retry.ts";
import { AliyunError } from "./errors.ts";
import { send, withRetry } from "./http.ts";
import type { StsCredentials } from "./rpc.ts";

export const IMDS_ENDPOINT = "http://100.100.100.200";
const TOKEN_TTL_SECONDS = "300";

/** The path the instance's user data is served at (ECS docs, "view instance metadata"). */
export const USER_DATA_PATH = "/latest/user-data";

/**
 * Largest user data read: ECS accepts at most 32 KiB; twice that leaves room for a service
 * change, and anything bigger is a wrong endpoint or a hostile network, not read.
 */
export const USER_DATA_MAX_BYTES = 64 * 1024;

/**
 * Alibaba Cloud's NTP service inside ECS networks (upstream time_sync.rs uses the first; the
 * others are numbered servers of the same service, tried when it does not answer).
 */
export const ALIYUN_NTP_SERVERS = [
  "ntp.cloud.aliyuncs.com",
  "ntp1.cloud.aliyuncs.com",
  "ntp10.cloud.aliyuncs.com",
];

/**
 * Whether the metadata service accepts a TCP connection within `timeoutMs`: how upstream tells an
 * ECS instance (it waits 5 s; callers here pass less, so a VM without IMDS is not held up).
 */
export async function imdsAnswers(timeoutMs: number, endpoint: string = IMDS_ENDPOINT): Promise<boolean> {
  const { connect } = await import("node:net");
  const url = new URL(endpoint);
  return new Promise<boolean>((resolve) => {
    const socket = connect({ host: url.hostname, port: Number(url.port || 80) });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

export class Imds {
  private token: string | undefined | null = null;

  constructor(
    private readonly endpoint: string = IMDS_ENDPOINT,
    private readonly retry: RetryPolicy = ALIYUN_RETRY,
  ) {}

  async regionId(): Promise<string> {
    const region = (await this.get("/latest/meta-data/region-id")).trim();
    if (!region) throw this.protocolError("/latest/meta-data/region-id", "empty region id");
    return region;
  }

  /** The single RAM role bound to the instance; more than one must be named in the config. */
  async ramRoleName(): Promise<string> {
    const path = "/latest/meta-data/ram/security-credentials/";
    const roles = (await this.get(path, "no RAM role is bound to this ECS instance"))
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean);
    if (roles.length === 1) return roles[0]!;
    throw new AliyunError({
      kind: "protocol",
      endpoint: this.endpoint,
      action: `GET ${path}`,
      reason:
        roles.length === 0
          ? "no RAM role is bound to this ECS instance"
          : `${roles.length} RAM roles are bound (${roles.join(", ")})`,
      hint: "bind exactly one RAM role to the instance or set ecs_ram_role_name",
    });
  }

  async roleCredentials(roleName: string): Promise<StsCredentials> {
    const path = `/latest/meta-data/ram/security-credentials/${encodeURIComponent(roleName)}`;
    const body = await this.get(path, `RAM role "${roleName}" is not bound to this ECS instance`);
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(body);
    } catch (cause) {
      throw this.protocolError(path, "credentials are not JSON", cause);
    }
    if (v.Code !== undefined && v.Code !== "Success")
      throw this.protocolError(path, `Code is ${String(v.Code)}`);
    const { AccessKeyId, AccessKeySecret, SecurityToken, Expiration } = v;
    if (
      typeof AccessKeyId !== "string" ||
      typeof AccessKeySecret !== "string" ||
      typeof SecurityToken !== "string"
    ) {
      throw this.protocolError(path, "AccessKeyId/AccessKeySecret/SecurityToken missing");
    }
    return {
      accessKeyId: AccessKeyId,
      accessKeySecret: AccessKeySecret,
      securityToken: SecurityToken,
      expiration: typeof Expiration === "string" ? Expiration : undefined,
    };
  }

  /** The instance's user data; undefined when none is set (HTTP 404, as ECS answers then). */
  async userData(): Promise<string | undefined> {
    const body = await this.get(USER_DATA_PATH, undefined, true);
    if (body === undefined) return undefined;
    const bytes = new TextEncoder().encode(body).length;
    if (bytes > USER_DATA_MAX_BYTES) {
      throw this.protocolError(
        USER_DATA_PATH,
        `${bytes} bytes, more than the ${USER_DATA_MAX_BYTES}-byte limit for user data`,
      );
    }
    return body;
  }

  private async get(path: string, notFound?: string): Promise<string>;
  private async get(path: string, notFound: string | undefined, optional: true): Promise<string | undefined>;
  private async get(path: string, notFound?: string, optional = false): Promise<string | undefined> {
    const token = await this.sessionToken();
    return withRetry(this.retry, async (timeoutMs) => {
      const r = await send({
        endpoint: this.endpoint,
        action: `GET ${path}`,
        url: this.endpoint + path,
        method: "GET",
        headers: token ? { "X-aliyun-ecs-metadata-token": token } : {},
        timeoutMs,
      });
      if (r.status === 200) return text(r.body);
      if (r.status === 404 && optional) return undefined;
      throw new AliyunError({
        kind: "http",
        endpoint: this.endpoint,
        action: `GET ${path}`,
        status: r.status,
        serviceMessage: r.status === 404 && notFound ? notFound : undefined,
        hint:
          r.status === 403 && !token
            ? "IMDS refused an IMDSv1 request and issued no IMDSv2 token"
            : undefined,
      });
    });
  }

  /** undefined = IMDSv1 (no token). Fetched once per instance. */
  private async sessionToken(): Promise<string | undefined> {
    if (this.token !== null) return this.token;
    const path = "/latest/api/token";
    const r = await withRetry(this.retry, async (timeoutMs) => {
      const res = await send({
        endpoint: this.endpoint,
        action: `PUT ${path}`,
        url: this.endpoint + path,
        method: "PUT",
        headers: { "X-aliyun-ecs-metadata-token-ttl-seconds": TOKEN_TTL_SECONDS },
        timeoutMs,
      });
      if (res.status >= 500)
        throw new AliyunError({
          kind: "http",
          endpoint: this.endpoint,
          action: `PUT ${path}`,
          status: res.status,
        });
      return res;
    });
    if (r.status === 200 && text(r.body).trim()) {
      this.token = text(r.body).trim();
    } else {
      log.debug(`IMDSv2 token refused (HTTP ${r.status}); using IMDSv1`);
      this.token = undefined;
    }
    return this.token;
  }

  private protocolError(path: string, reason: string, cause?: unknown): AliyunError {
    return new AliyunError({
      kind: "protocol",
      endpoint: this.endpoint,
      action: `GET ${path}`,
      reason,
      cause,
    });
  }
}
