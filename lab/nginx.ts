// The ingress pod: Debian's nginx as a reverse proxy in front of the app.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const NGINX_BIN = '/usr/sbin/nginx';

export interface NginxFiles {
  prefixDir: string;
  confFile: string;
  errorLog: string;
}

export interface NginxExtraUpstreams {
  /** A Service (ClusterIP) address `ip:port`, proxied at /svc/ with keep-alive; DNAT in the pod rewrites it. */
  service?: string;
  /** An HTTP/1.0 close-delimited server `ip:port`, proxied at /h10/ with proxy_http_version 1.0. */
  http10?: string;
}

/**
 * Writes the config and the directories nginx needs under stateDir/nginx; nothing under /etc or /var.
 * Locations: `/` -> upstream (keep-alive), and when given `/svc/` -> extra.service (keep-alive),
 * `/h10/` -> extra.http10 (HTTP/1.0, one connection per request). Paths pass through unchanged.
 */
export function writeNginxConfig(stateDir: string, upstream: string, extra: NginxExtraUpstreams = {}): NginxFiles {
  const svcUpstream = extra.service
    ? `
  upstream svc {
    server ${extra.service};
    keepalive 16;
  }
`
    : '';
  const svcLocation = extra.service
    ? `
    location /svc/ {
      proxy_pass http://svc;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Request-ID $strata_request_id;
    }
`
    : '';
  // HTTP/1.0 upstream: nginx sends `Connection: close`, the server closes after the body.
  const h10Location = extra.http10
    ? `
    location /h10/ {
      proxy_pass http://${extra.http10};
      proxy_http_version 1.0;
      proxy_set_header X-Request-ID $strata_request_id;
    }
`
    : '';
  return writeConfig(
    stateDir,
    `  upstream app {
    server ${upstream};
    keepalive 16;
  }
${svcUpstream}  server {
    listen 80;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Request-ID $strata_request_id;
    }
${svcLocation}${h10Location}  }
`,
  );
}

export interface IngressServer {
  /** server_name; absent: the default server */
  host?: string;
  /** the Service's endpoints, `ip:port` each (ingress-nginx proxies to endpoints, not to the ClusterIP) */
  endpoints: string[];
}

/**
 * An ingress-nginx-like config: one server per host (the one without a host is the default
 * server), each proxying everything to its Service's endpoints over keep-alive connections, with
 * the client's Host, and X-Request-ID (generated when absent) when `requestId`.
 */
export function writeIngressConfig(stateDir: string, servers: readonly IngressServer[], opts: { port: number; requestId: boolean }): NginxFiles {
  const upstreams = servers.map((s, i) => `  upstream backend${i} {
${s.endpoints.map((e) => `    server ${e};`).join('\n')}
    keepalive 16;
  }
`);
  const blocks = servers.map((s, i) => `  server {
    listen ${opts.port}${s.host ? '' : ' default_server'};
    server_name ${s.host ?? '_'};
    location / {
      proxy_pass http://backend${i};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
${opts.requestId ? '      proxy_set_header X-Request-ID $strata_request_id;\n' : ''}    }
  }
`);
  // no rule without a host: unknown hosts get a 404 from nginx itself, as ingress-nginx's default backend
  const fallback = servers.some((s) => !s.host) ? '' : `  server {
    listen ${opts.port} default_server;
    return 404;
  }
`;
  return writeConfig(stateDir, [...upstreams, ...blocks, fallback].join(''));
}

/** nginx.conf around an http block body, with every path under stateDir (nothing under /etc or /var). */
function writeConfig(stateDir: string, httpBody: string): NginxFiles {
  const prefixDir = join(stateDir, 'nginx');
  const logs = join(stateDir, 'logs');
  const temp = join(prefixDir, 'temp');
  mkdirSync(temp, { recursive: true });
  mkdirSync(logs, { recursive: true });
  const confFile = join(prefixDir, 'nginx.conf');
  const errorLog = join(logs, 'nginx-error.log');
  writeFileSync(
    confFile,
    `daemon off;
master_process on;
worker_processes 1;
pid ${join(prefixDir, 'nginx.pid')};
error_log ${errorLog} info;

events {
  worker_connections 1024;
}

http {
  access_log ${join(logs, 'nginx-access.log')};
  client_body_temp_path ${temp}/body;
  proxy_temp_path ${temp}/proxy;
  fastcgi_temp_path ${temp}/fastcgi;
  uwsgi_temp_path ${temp}/uwsgi;
  scgi_temp_path ${temp}/scgi;
  client_max_body_size 8m;

  # Keep the client's X-Request-ID; generate one only when the request has none.
  map $http_x_request_id $strata_request_id {
    ""      $request_id;
    default $http_x_request_id;
  }

${httpBody}}
`,
  );
  return { prefixDir, confFile, errorLog };
}

/** Arguments for the foreground master (`daemon off`), with -e so nothing goes to /var/log. */
export function nginxArgs(f: NginxFiles): string[] {
  return ['-p', f.prefixDir, '-c', f.confFile, '-e', f.errorLog];
}
