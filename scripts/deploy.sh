#!/usr/bin/env bash
# Deploys tozai to both regions of tozai.toml: builds the Lambda packages (with the config
# bundled), then for each region packages and deploys its root stack
# (infra/primary/root.yaml in the --home region, infra/secondary/root.yaml in the other),
# with every parameter derived from the config by infra/params.py. The current primary is
# deployed first, so after a failover the new primary runs the sync before the old one
# stops.
#
#   bash scripts/deploy.sh -c tozai.toml --home tokyo --bucket-prefix my-artifacts
#
#   -c FILE             the config (required); its `primary` line decides where the sync runs
#   --home NAME         the config region that deploys infra/primary/root.yaml (your primary
#                       site, e.g. tokyo); it stays the same after a failover
#   --bucket-prefix P   artifacts go to the S3 bucket P-<aws_region> of each region (created,
#                       private, if missing; us-east-1 included): Lambda code must be in the
#                       function's region
#   --stack-name S      the root stack's name in both regions (default tozai)
#   --only NAME         deploy that region only (a failover while the other region is down)
#   --arch A            x86_64 or arm64 (default x86_64: see scripts/package-lambdas.sh)
#   --no-build          use the packages already in target/lambda (their config must be FILE)
#   --account ID        the AWS account (default: asked from STS)
#   --alarm-email ADDR  subscribe an e-mail address to the alarms
#   --package-only      create the buckets and package the templates (target/infra/NAME.yaml,
#                       code and nested templates uploaded), deploy nothing: to review first
#   --dry-run           print the AWS commands instead of running them (the bucket's creation
#                       is printed too; it runs only when the bucket is missing)
#   -- KEY=VALUE...     more parameter overrides for both roots (MirrorSchedule='cron(0/15 * * * ? *)'
#                       with reconcile = "15m" in [sync],
#                       MirrorReservedConcurrency=0, LogRetentionDays=365, NamePrefix=...)
#
# Needs: the AWS CLI (v1 or v2) with credentials for the account, python3 (3.11+), and what
# scripts/package-lambdas.sh needs. The equivalent by hand, per region:
#   aws cloudformation package --template-file infra/primary/root.yaml --s3-bucket B \
#     --output-template-file packaged.yaml
#   aws cloudformation deploy --template-file packaged.yaml --stack-name tozai \
#     --capabilities CAPABILITY_IAM CAPABILITY_NAMED_IAM CAPABILITY_AUTO_EXPAND \
#     --parameter-overrides $(python3 infra/params.py -c tozai.toml -a ACCOUNT --region tokyo)
# (`sam deploy` with the same template, parameters and capabilities works too.)
set -euo pipefail
cd "$(dirname "$0")/.."

config="" home="" bucket_prefix="" stack="tozai" only="" arch="x86_64" build=1 account=""
email="" dry_run=0 package_only=0 extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    -c|--config) config="${2:?}"; shift 2 ;;
    --home) home="${2:?}"; shift 2 ;;
    --bucket-prefix) bucket_prefix="${2:?}"; shift 2 ;;
    --stack-name) stack="${2:?}"; shift 2 ;;
    --only) only="${2:?}"; shift 2 ;;
    --arch) arch="${2:?}"; shift 2 ;;
    --no-build) build=0; shift ;;
    --account) account="${2:?}"; shift 2 ;;
    --alarm-email) email="${2:?}"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --package-only) package_only=1; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "deploy: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
die() { echo "deploy: $*" >&2; exit 2; }
[ -n "$config" ] || die "-c tozai.toml is required"
[ -f "$config" ] || die "$config does not exist"
[ -n "$home" ] || die "--home NAME is required (the config region of your primary site; it deploys infra/primary/root.yaml)"
[ -n "$bucket_prefix" ] || die "--bucket-prefix is required (artifacts go to PREFIX-<aws_region>)"
command -v python3 >/dev/null || die "python3 is needed"
[ "$dry_run" = 1 ] || command -v aws >/dev/null || die "the AWS CLI is needed (pip install awscli, or AWS CLI v2)"

run() { if [ "$dry_run" = 1 ]; then printf '%q ' "$@"; echo; else "$@"; fi; }

# The artifacts bucket $1 in AWS region $2, created private when missing. S3 refuses a
# LocationConstraint of us-east-1 (its default location): there the configuration is left out.
ensure_bucket() {
  local bucket="$1" aws_region="$2" location=()
  if [ "$dry_run" = 0 ] && aws s3api head-bucket --bucket "$bucket" --region "$aws_region" >/dev/null 2>&1; then
    return
  fi
  [ "$aws_region" = us-east-1 ] || location=(--create-bucket-configuration "LocationConstraint=$aws_region")
  [ "$dry_run" = 0 ] || echo "# if s3://$bucket is missing:"
  if [ "$dry_run" = 1 ]; then
    run aws s3api create-bucket --bucket "$bucket" --region "$aws_region" "${location[@]}"
  else
    aws s3api create-bucket --bucket "$bucket" --region "$aws_region" "${location[@]}" >/dev/null
  fi
  run aws s3api put-public-access-block --bucket "$bucket" --region "$aws_region" \
    --public-access-block-configuration \
    BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
}

if [ -z "$account" ]; then
  if [ "$dry_run" = 1 ]; then account=123456789012; else
    account=$(aws sts get-caller-identity --query Account --output text)
  fi
fi
derived=$(python3 infra/params.py -c "$config" -a "$account")
regions=$(printf '%s' "$derived" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for name in sorted(d, key=lambda n: not d[n]["is_primary"]):   # the primary first
    print(name, d[name]["aws_region"])')
printf '%s\n' "$regions" | grep -q "^$home " || die "--home $home is not a region of $config"
[ -z "$only" ] || printf '%s\n' "$regions" | grep -q "^$only " || die "--only $only is not a region of $config"

if [ "$build" = 1 ]; then
  run bash scripts/package-lambdas.sh -c "$config" --arch "$arch"
else
  for fn in sync-judge pipeline-judge mirror; do
    [ -f "target/lambda/$fn.zip" ] || die "target/lambda/$fn.zip is missing: run scripts/package-lambdas.sh"
    cmp -s "target/lambda/$fn/tozai.toml" "$config" \
      || die "target/lambda/$fn bundles another config than $config: rebuild (drop --no-build)"
  done
fi
if [ "$dry_run" = 0 ]; then arch=$(cat target/lambda/ARCH); fi

mkdir -p target/infra
while read -r name aws_region; do
  [ -z "$only" ] || [ "$only" = "$name" ] || continue
  root=infra/secondary/root.yaml
  [ "$name" = "$home" ] && root=infra/primary/root.yaml
  bucket="$bucket_prefix-$aws_region"
  echo "deploy: $name ($aws_region): $root -> stack $stack"
  ensure_bucket "$bucket" "$aws_region"
  mapfile -t params < <(python3 infra/params.py -c "$config" -a "$account" --region "$name")
  params+=("Architecture=$arch")
  [ -z "$email" ] || params+=("AlarmEmail=$email")
  run aws cloudformation package --region "$aws_region" --template-file "$root" \
    --s3-bucket "$bucket" --s3-prefix "$stack" --output-template-file "target/infra/$name.yaml"
  [ "$package_only" = 0 ] || { echo "deploy: $name packaged: target/infra/$name.yaml (--package-only: not deployed)"; continue; }
  run aws cloudformation deploy --region "$aws_region" --stack-name "$stack" \
    --template-file "target/infra/$name.yaml" --s3-bucket "$bucket" --s3-prefix "$stack" \
    --capabilities CAPABILITY_IAM CAPABILITY_NAMED_IAM CAPABILITY_AUTO_EXPAND \
    --no-fail-on-empty-changeset --parameter-overrides "${params[@]}" "${extra[@]}"
done <<< "$regions"
