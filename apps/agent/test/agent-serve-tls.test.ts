/**
 * The real agent process serving over mutual TLS (serve.tls in its local policy) from two serve
 * workers: a serve job from this test (playing the control plane over the real nats-server)
 * reports an https endpoint, clients with a certificate from the client CA are answered, others
 * get the protocol's 403; its metrics endpoint (metrics.tls) likewise; and an agent whose TLS files
 * do not fit together does not start.
 * Needs `npx tsc -b apps/agent` (npm run build) first; it builds once itself when dist is missing.
 */
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  httpsRequest,
  issueCertificate,
  linearRegressionModel,
  makeCertificateAuthority,
  type PemPair,
} from '@hearth/testing';
import { makeAgentHome, metricsUrl, runAgentToExit, startAgent, type AgentProcess } from './agent-process.js';
import { FakeControlPlane, writeModel } from './fake-control-plane.js';

jest.setTimeout(60_000);

let cp: FakeControlPlane;
let tmp: string;
let dataDir: string;
let artifactRoot: string;
let agent: AgentProcess;
let serverCa: PemPair;
let client: PemPair;
let stranger: PemPair;
let tls: { certFile: string; keyFile: string; clientCaFile: string };

beforeAll(async () => {
  cp = await FakeControlPlane.start();
  ({ tmp, dataDir, artifactRoot } = makeAgentHome(cp, 'hearth-agent-serve-tls-', (home) => {
    const pki = path.join(home.tmp, 'pki');
    serverCa = makeCertificateAuthority(pki, 'server-ca');
    const clientCa = makeCertificateAuthority(pki, 'client-ca');
    const server = issueCertificate(serverCa, pki, 'inference');
    client = issueCertificate(clientCa, pki, 'scoring-service');
    stranger = issueCertificate(makeCertificateAuthority(pki, 'stranger-ca'), pki, 'stranger');
    tls = { certFile: server.cert, keyFile: server.key, clientCaFile: clientCa.cert };
    return {
      artifactRoot: home.artifactRoot,
      serve: { host: '127.0.0.1', port: 8600, workers: 2, tls },
      // The monitoring endpoint on the same files: only the client CA's scrapers are answered.
      metrics: { host: '127.0.0.1', port: 0, tls },
    };
  }));
  agent = await startAgent(dataDir, tmp, ['--serve-port', '0']);
});

afterAll(async () => {
  agent?.stop();
  await cp?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const INFER = JSON.stringify({
  inputs: [{ name: 'float_input', datatype: 'FP32', shape: [1, 3], data: [1, 2, 4] }],
});

describe('hearth-agent with serve.tls', () => {
  it('serves a deployment over mutual TLS from its serve workers, and refuses clients without a certificate', async () => {
    const model = writeModel(artifactRoot, 'price', '1', linearRegressionModel()); // [1, 2, 4] → 3
    const job = await cp.send({
      kind: 'serve',
      serve: { deploymentId: randomUUID(), model },
      timeoutSeconds: null,
    });
    const endpoint = await cp.waitServeReady(job.attemptId, 30_000, () => agent.log());
    // The endpoint the control plane is told is the https one.
    expect(endpoint).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const url = `${endpoint}/v2/models/price/infer`;

    // Each request on a connection of its own: the workers take them in turn.
    const answers = await Promise.all(
      Array.from({ length: 10 }, () => httpsRequest(url, { ca: serverCa.cert, client, body: INFER })),
    );
    expect(new Set(answers.map((a) => `${a.status} ${a.text}`))).toEqual(
      new Set([
        '200 {"model_name":"price","model_version":"1","outputs":[{"name":"variable","datatype":"FP32","shape":[1,1],"data":[3]}]}',
      ]),
    );
    for (const presented of [undefined, stranger]) {
      const refused = await httpsRequest(url, { ca: serverCa.cert, client: presented, body: INFER });
      expect(refused.status).toBe(403);
      expect(JSON.parse(refused.text)).toEqual({
        error:
          'this inference server answers only clients with a certificate issued by the CA it trusts ' +
          '(mutual TLS); present one',
      });
    }
    expect(agent.log()).not.toContain('plain HTTP');
  });

  it('answers Prometheus on its metrics endpoint over mutual TLS too (metrics.tls)', async () => {
    const url = metricsUrl(agent.log());
    expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const scrape = await httpsRequest(url, { ca: serverCa.cert, client });
    expect(scrape.status).toBe(200);
    expect(scrape.text).toMatch(/^hearth_agent_nats_connected 1$/m);
    const refused = await httpsRequest(url.replace('/metrics', '/readyz'), {
      ca: serverCa.cert,
      client: stranger,
    });
    expect(refused.status).toBe(403);
  });

  it('does not start when the key is not the certificate’s, and says which file to fix', async () => {
    const other = issueCertificate(serverCa, path.join(tmp, 'pki'), 'other');
    const policy = path.join(tmp, 'mismatched-policy.json');
    fs.writeFileSync(policy, JSON.stringify({ serve: { tls: { ...tls, keyFile: other.key } } }));
    const run = await runAgentToExit(['run', '--data-dir', dataDir, '--policy', policy]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(
      `serve.tls.keyFile ${other.key} is not the private key of the certificate in ${tls.certFile} ` +
        `(the local policy ${policy})`,
    );
  });
});
