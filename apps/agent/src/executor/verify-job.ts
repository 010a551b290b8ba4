/**
 * Verify before run: a job is checked against the customer's local policy before it is claimed,
 * so that nothing starts (and the control plane is not told it did) for a job this machine must
 * not run. Checks: command jobs allowed, with their program and environment (command-check.ts);
 * datasets inside the data roots; an artifact root
 * for the kinds that write; models inside the artifact root, with the sha256 the job pins, and
 * decodable as ONNX. A refusal carries a reason for the user; the model bytes that passed are the
 * ones the job then loads.
 */
import type { JobDispatch } from '@hearth/contracts';
import { errorMessage } from '../logger.js';
import { checkCommand } from '../policy/command-check.js';
import { PolicyError, resolveDatasetUri, resolveModelUri, type LocalPolicy } from '../policy/local-policy.js';
import { ModelFileError, readVerifiedModel, type VerifiedModel } from '../serve/model-file.js';

type Kind<K extends JobDispatch['kind']> = Extract<JobDispatch, { kind: K }>;

export type VerifiedJob =
  | { kind: 'command'; job: Kind<'command'>; executable: string }
  | { kind: 'train'; job: Kind<'train'> }
  | { kind: 'batch_predict'; job: Kind<'batch_predict'>; model: VerifiedModel; inputPath: string }
  | { kind: 'serve'; job: Kind<'serve'>; model: VerifiedModel };

export type Verdict = { ok: true; verified: VerifiedJob } | { ok: false; reason: string };

/** `searchPath`: the PATH the agent finds a command job's program on (its own, not the job's). */
export async function verifyJob(job: JobDispatch, policy: LocalPolicy, searchPath: string): Promise<Verdict> {
  try {
    return { ok: true, verified: await verify(job, policy, searchPath) };
  } catch (err) {
    if (err instanceof PolicyError || err instanceof ModelFileError)
      return { ok: false, reason: err.message };
    return {
      ok: false,
      reason: `the job could not be checked against the local policy: ${errorMessage(err)}`,
    };
  }
}

async function verify(job: JobDispatch, policy: LocalPolicy, searchPath: string): Promise<VerifiedJob> {
  switch (job.kind) {
    case 'command': {
      const { executable } = checkCommand(job.command, job.env, policy, searchPath);
      return { kind: 'command', job, executable };
    }
    case 'train':
      resolveDatasetUri(job.train.dataset.uri, policy);
      requireArtifactRoot(policy, 'a train job cannot save its model');
      return { kind: 'train', job };
    case 'batch_predict': {
      const { model, input } = job.batchPredict;
      const inputPath = resolveDatasetUri(input.uri, policy).path;
      requireArtifactRoot(policy, 'a batch_predict job cannot write its predictions');
      return { kind: 'batch_predict', job, model: await verifiedModel(model, policy), inputPath };
    }
    case 'serve':
      return { kind: 'serve', job, model: await verifiedModel(job.serve.model, policy) };
  }
}

function requireArtifactRoot(policy: LocalPolicy, consequence: string): void {
  if (policy.artifactRoot === null) {
    throw new PolicyError(
      `no artifact root is configured on this agent, so ${consequence}: set "artifactRoot" to a directory ` +
        `in ${policy.file}`,
    );
  }
}

async function verifiedModel(
  model: { uri: string; sha256: string },
  policy: LocalPolicy,
): Promise<VerifiedModel> {
  const resolved = resolveModelUri(model.uri, policy);
  return readVerifiedModel(resolved.path, model.uri, model.sha256);
}
