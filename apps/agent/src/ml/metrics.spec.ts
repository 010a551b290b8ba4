import { describe, expect, it } from '@jest/globals';
import { epochMetrics, meanLoss, rocAuc } from './metrics.js';

const at = { epoch: 2, loss: 0.5, hasValidation: true };

describe('epochMetrics', () => {
  it('regression: MSE as valLoss, RMSE and MAE', () => {
    const m = epochMetrics('regression', Float32Array.of(1, 2, 4), Float64Array.of(1, 3, 2), 1, at);
    expect(m).toEqual({ epoch: 2, loss: 0.5, valLoss: 5 / 3, rmse: Math.sqrt(5 / 3), mae: 1 });
  });

  it('binary: cross-entropy, accuracy at 0.5 and AUC', () => {
    const m = epochMetrics('binary', Float32Array.of(0.9, 0.2, 0.6, 0.4), Float64Array.of(1, 0, 0, 1), 1, at);
    expect(m).toMatchObject({ epoch: 2, loss: 0.5, accuracy: 0.5, auc: 0.75 });
    expect(m!.valLoss).toBeCloseTo(-(Math.log(0.9) + Math.log(0.8) + Math.log(0.4) + Math.log(0.4)) / 4, 6);
  });

  it('multiclass: accuracy of the arg-max, and no valLoss without validation rows', () => {
    const predictions = Float32Array.of(0.7, 0.2, 0.1, 0.1, 0.3, 0.6, 0.5, 0.4, 0.1);
    const m = epochMetrics('multiclass', predictions, Float64Array.of(0, 2, 1), 3, {
      ...at,
      hasValidation: false,
    });
    expect(m).toEqual({ epoch: 2, loss: 0.5, valLoss: null, accuracy: 2 / 3 });
  });

  it('null for predictions that are not finite', () => {
    expect(epochMetrics('regression', Float32Array.of(NaN), Float64Array.of(1), 1, at)).toBeNull();
  });
});

describe('meanLoss', () => {
  it('clips probabilities so a confident miss is large but finite', () => {
    expect(meanLoss('binary', Float32Array.of(0), Float64Array.of(1), 1)).toBeCloseTo(-Math.log(1e-7), 6);
  });
});

describe('rocAuc', () => {
  it('computes the area under the ROC curve, ties counted half', () => {
    expect(rocAuc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])).toBeCloseTo(0.75, 10);
    expect(rocAuc([0.9, 0.8, 0.1], [0, 0, 1])).toBe(0);
    expect(rocAuc([0.5, 0.5], [0, 1])).toBe(0.5);
    expect(rocAuc([0.2, 0.3], [1, 1])).toBeNull();
  });
});
