/**
 * The numbers reported after each epoch, computed in float64 from the model's predictions: the
 * loss on the evaluated rows, and accuracy + ROC AUC (binary), accuracy (multiclass) or RMSE + MAE
 * (regression). Evaluated rows are the validation rows when there are some, else the training rows.
 */
import type { TrainEpochMetrics, TrainTask } from '@hearth/contracts';

/** Probabilities are clipped to [EPSILON, 1 - EPSILON] before a log, as in the training loss. */
export const EPSILON = 1e-7;

/**
 * predictions: [rows × units] (units = classes for multiclass, else 1); truth: target values or
 * class indices. null when the predictions are not finite (a diverged model).
 */
export function epochMetrics(
  task: TrainTask,
  predictions: Float32Array,
  truth: Float64Array,
  classes: number,
  at: { epoch: number; loss: number; hasValidation: boolean },
): TrainEpochMetrics | null {
  const evalLoss = meanLoss(task, predictions, truth, classes);
  if (!Number.isFinite(evalLoss)) return null;
  const base = { epoch: at.epoch, loss: at.loss, valLoss: at.hasValidation ? evalLoss : null };
  if (task === 'regression') {
    let squared = 0;
    let absolute = 0;
    truth.forEach((t, i) => {
      const e = predictions[i] - t;
      squared += e * e;
      absolute += Math.abs(e);
    });
    return { ...base, rmse: Math.sqrt(squared / truth.length), mae: absolute / truth.length };
  }
  if (task === 'binary') {
    let correct = 0;
    truth.forEach((t, i) => (correct += Number((predictions[i] >= 0.5 ? 1 : 0) === t)));
    return { ...base, accuracy: correct / truth.length, auc: rocAuc(predictions, truth) };
  }
  let correct = 0;
  truth.forEach((t, i) => {
    let best = 0;
    for (let k = 1; k < classes; k++) {
      if (predictions[i * classes + k] > predictions[i * classes + best]) best = k;
    }
    correct += Number(best === t);
  });
  return { ...base, accuracy: correct / truth.length };
}

/** Mean squared error, or mean cross-entropy of the true class. */
export function meanLoss(
  task: TrainTask,
  predictions: Float32Array,
  truth: Float64Array,
  classes: number,
): number {
  let sum = 0;
  const clip = (p: number) => Math.min(Math.max(p, EPSILON), 1 - EPSILON);
  truth.forEach((t, i) => {
    if (task === 'regression') sum += (predictions[i] - t) ** 2;
    else if (task === 'binary')
      sum -= t * Math.log(clip(predictions[i])) + (1 - t) * Math.log(1 - clip(predictions[i]));
    else sum -= Math.log(clip(predictions[i * classes + t]));
  });
  return sum / truth.length;
}

/** Area under the ROC curve (Mann–Whitney, ties counted half); null when one class is absent. */
export function rocAuc(scores: ArrayLike<number>, truth: ArrayLike<number>): number | null {
  const order = Array.from({ length: truth.length }, (_, i) => i).sort((a, b) => scores[a] - scores[b]);
  let positives = 0;
  let rankSum = 0;
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && scores[order[j + 1]] === scores[order[i]]) j++;
    const rank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) {
      if (truth[order[k]] === 1) {
        positives++;
        rankSum += rank;
      }
    }
    i = j + 1;
  }
  const negatives = truth.length - positives;
  if (positives === 0 || negatives === 0) return null;
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}
