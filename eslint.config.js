import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', '.hearth/**', '.tmp/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: globals.node },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-properties': [
        'error',
        { object: 'process', property: 'env', message: 'Only config/ reads process.env.' },
      ],
    },
  },
  {
    files: [
      '**/config/**/*.ts',
      '**/*.spec.ts',
      '**/test/**/*.ts',
      'libs/testing/**/*.{ts,mjs}',
      'bench/**',
      '*.js',
      'scripts/**',
    ],
    rules: { 'no-restricted-properties': 'off' },
  },
);
