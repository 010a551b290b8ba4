import { Field, Float, ID, InputType, Int, ObjectType, registerEnumType } from '@nestjs/graphql';
import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsIn,
  IsInt,
  IsNotEmpty,
  IsOptional,
  Matches,
  Max,
  MaxLength,
  Min,
  ValidateNested,
} from 'class-validator';

export enum ModelStage {
  NONE = 'NONE',
  STAGING = 'STAGING',
  PRODUCTION = 'PRODUCTION',
  ARCHIVED = 'ARCHIVED',
}
registerEnumType(ModelStage, { name: 'ModelStage' });

export enum ModelVersionSource {
  /** Registered automatically when a TRAIN job succeeded. */
  TRAIN = 'TRAIN',
  /** Registered explicitly (an ONNX file a command job produced: sklearn, XGBoost, PyTorch exports). */
  REGISTERED = 'REGISTERED',
}
registerEnumType(ModelVersionSource, { name: 'ModelVersionSource' });

@ObjectType('TensorSpec', { description: 'An input or output of a model, in Open Inference Protocol terms.' })
export class TensorSpecModel {
  @Field() name!: string;
  @Field() datatype!: string;
  @Field(() => [Int], { description: '-1 for a dimension of any size.' }) shape!: number[];
}

@ObjectType('ModelArtifact', {
  description: "A model file in the customer's artifact store: never uploaded.",
})
export class ModelArtifactModel {
  @Field() uri!: string;
  @Field() sha256!: string;
  @Field(() => Float) sizeBytes!: number;
  @Field() format!: string;
  @Field(() => [TensorSpecModel], { nullable: true }) inputs!: TensorSpecModel[] | null;
  @Field(() => [TensorSpecModel], { nullable: true }) outputs!: TensorSpecModel[] | null;
}

@ObjectType('DatasetFingerprint', { description: 'Identifies training data without revealing it.' })
export class DatasetFingerprintModel {
  @Field() sha256!: string;
  @Field(() => Int) rows!: number;
}

@ObjectType('ModelVersion')
export class ModelVersionModel {
  @Field(() => ID) id!: string;
  @Field(() => ID) modelId!: string;
  @Field() modelName!: string;
  @Field(() => Int) version!: number;
  @Field(() => ModelStage) stage!: ModelStage;
  @Field(() => ModelVersionSource) source!: ModelVersionSource;
  @Field(() => ID, { nullable: true, description: 'The job that produced it.' }) jobId!: string | null;
  @Field(() => [ModelArtifactModel]) artifacts!: ModelArtifactModel[];
  @Field(() => String, { nullable: true, description: 'Final metrics, as JSON.' }) metrics!: string | null;
  @Field(() => DatasetFingerprintModel, { nullable: true })
  datasetFingerprint!: DatasetFingerprintModel | null;
  @Field(() => String, { nullable: true, description: 'The training backend.' }) backend!: string | null;
  @Field(() => [String], { nullable: true }) featureNames!: string[] | null;
  @Field(() => [String], { nullable: true, description: 'Classification: output index i is labels[i].' })
  labels!: string[] | null;
  @Field({ description: 'How it was made (trainer configuration or exporting command), as JSON.' })
  lineage!: string;
  @Field() description!: string;
  @Field(() => Date) createdAt!: Date;
  @Field(() => Date, { nullable: true }) stageChangedAt!: Date | null;
}

@ObjectType('Model')
export class ModelModel {
  @Field(() => ID) id!: string;
  @Field({ description: 'Also its name in the Open Inference Protocol (/v2/models/{name}).' }) name!: string;
  @Field(() => ID, { nullable: true }) projectId!: string | null;
  @Field() description!: string;
  @Field(() => Date) createdAt!: Date;
}

@InputType()
export class TensorSpecInput {
  @Field()
  @Matches(/^[A-Za-z_][A-Za-z0-9_.:/-]{0,63}$/, { message: 'tensor name must be 1-64 characters, no spaces' })
  name!: string;
  @Field()
  @IsIn(['FP32', 'FP64', 'INT32', 'INT64', 'BOOL', 'BYTES'], {
    message: 'datatype must be one of $constraint1',
  })
  datatype!: string;
  @Field(() => [Int])
  @ArrayMaxSize(8)
  @IsInt({ each: true })
  @Min(-1, { each: true })
  shape!: number[];
}

@InputType({ description: "An ONNX file that already exists in the customer's artifact store." })
export class RegisterModelVersionInput {
  @Field({ description: 'Created if new.' })
  @Matches(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, { message: 'modelName must be 1-64 of A-Z a-z 0-9 _ . -' })
  modelName!: string;
  @Field(() => ID, { nullable: true, description: 'For a new model: its project.' })
  @IsOptional()
  @IsNotEmpty({ message: 'projectId must not be empty: leave it out instead' })
  projectId?: string;
  @Field({ description: "file:// URI of the .onnx file in the agent's artifact store." })
  @Matches(/^file:\/\/\S+\.onnx$/, { message: 'uri must be a file:// URI of an .onnx file' })
  @MaxLength(2048)
  uri!: string;
  @Field()
  @Matches(/^[0-9a-f]{64}$/, { message: 'sha256 must be 64 lowercase hex characters' })
  sha256!: string;
  @Field(() => Float, { description: 'A whole number of bytes (Float only to go past 2^31).' })
  @IsInt({ message: 'sizeBytes must be a whole number of bytes' })
  @Min(1)
  @Max(Number.MAX_SAFE_INTEGER)
  sizeBytes!: number;
  @Field(() => [TensorSpecInput], { nullable: true })
  @IsOptional()
  @ValidateNested({ each: true })
  @Type(() => TensorSpecInput)
  @ArrayMinSize(1)
  @ArrayMaxSize(16)
  inputs?: TensorSpecInput[];
  @Field(() => [TensorSpecInput], { nullable: true })
  @IsOptional()
  @ValidateNested({ each: true })
  @Type(() => TensorSpecInput)
  @ArrayMinSize(1)
  @ArrayMaxSize(16)
  outputs?: TensorSpecInput[];
  @Field(() => ID, { nullable: true, description: 'The COMMAND job that exported it (lineage).' })
  @IsOptional()
  @IsNotEmpty({ message: 'jobId must not be empty: leave it out instead' })
  jobId?: string;
  @Field({ nullable: true })
  @IsOptional()
  @MaxLength(1000)
  description?: string;
}
