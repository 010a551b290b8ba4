/**
 * What the registry adds to the job kinds: a TRAIN job checks its model name up front, and when it
 * succeeds its result is checked against the job (trainResultProblem) and registered as a version; a BATCH_PREDICT job resolves its model version to the ONNX file on the
 * agent (URI and hash, so the agent verifies what it loads).
 */
import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { BatchPredictSpec, batchPredictResultProblem, trainResultProblem } from '@hearth/contracts';
import { InvalidInputError } from '../../platform/errors/domain-error.js';
import { JobKinds } from '../jobs/job-kinds.js';
import { ModelsService } from './models.service.js';
import { ModelInAnotherProjectError } from './models.errors.js';

@Injectable()
export class ModelJobs implements OnModuleInit {
  constructor(
    @Inject(JobKinds) private readonly kinds: JobKinds,
    @Inject(ModelsService) private readonly models: ModelsService,
  ) {}

  onModuleInit() {
    this.kinds.register('TRAIN', {
      prepare: async (m, _p, input, projectId) => {
        const name = input.train!.modelName;
        const [existing]: { project_id: string | null }[] = await m.query(
          `SELECT project_id FROM models WHERE name = $1`,
          [name],
        );
        if (existing && existing.project_id !== projectId) throw new ModelInAnotherProjectError(name);
        return {};
      },
      result: 'train',
      verify: (job, result) =>
        result.kind === 'train' && job.spec?.train
          ? trainResultProblem(job.spec.train, result.train, job.progress.backend)
          : 'the job has no train spec',
      onSucceeded: (m, job, result) =>
        result.kind === 'train' ? this.models.registerTrained(m, job, result.train) : Promise.resolve(null),
    });
    this.kinds.register('BATCH_PREDICT', {
      result: 'batch_predict',
      verify: (_job, result) =>
        result.kind === 'batch_predict' ? batchPredictResultProblem(result.batchPredict) : null,
      prepare: async (m, p, input) => {
        const b = input.batchPredict!;
        const v = await this.models.requireVersion(m, p, b.modelVersionId, 'models:read');
        const onnx = ModelsService.onnxOf(v);
        const parsed = BatchPredictSpec.safeParse({
          model: { name: v.model_name, version: String(v.version), uri: onnx.uri, sha256: onnx.sha256 },
          input: { uri: b.inputUri, ...(b.inputFormat ? { format: b.inputFormat } : {}) },
          ...((b.features ?? v.feature_names) ? { features: b.features ?? v.feature_names } : {}),
        });
        if (!parsed.success) {
          const issue = parsed.error.issues[0];
          throw new InvalidInputError(`batchPredict.${issue.path.join('.')}: ${issue.message}`);
        }
        return { batchPredict: parsed.data };
      },
    });
  }
}
