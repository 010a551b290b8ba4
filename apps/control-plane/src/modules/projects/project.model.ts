import { Field, ID, InputType, ObjectType } from '@nestjs/graphql';
import { IsOptional, Length, MaxLength } from 'class-validator';
import { Trim } from '../../platform/graphql/trim.js';

@ObjectType('Project', {
  description: 'A group of jobs and models inside an organization, with its own role bindings.',
})
export class ProjectModel {
  @Field(() => ID) id!: string;
  @Field() name!: string;
  @Field() description!: string;
  @Field(() => Date) createdAt!: Date;
}

@InputType()
export class CreateProjectInput {
  @Field()
  @Trim()
  @Length(1, 100, { message: 'name must be 1 to 100 characters' })
  name!: string;

  @Field({ nullable: true })
  @IsOptional()
  @MaxLength(1000)
  description?: string;
}
