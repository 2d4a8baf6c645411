# Enqueues jobs through ActiveJob's sidekiq adapter (or Sidekiq::Client for plain workers) and
# prints their ids. ARGV[0] is a JSON list of {"job", "args", "queue"?, "wait"?, "jid"?}; the
# output is a JSON list of {"job_id", "jid"} in the same order.
require_relative "sidekiq_jobs"

# Sidekiq client middleware: what a Rails app would set with sidekiq_options on the job.
class SidekiqNoRetryForDoomed
  def call(_worker, item, _queue, _redis_pool)
    item["retry"] = 0 if %w[SidekiqDoomedJob SidekiqTrackedDoomedJob].include?(item["wrapped"].to_s)
    yield
  end
end

Sidekiq.configure_client do |config|
  config.client_middleware { |chain| chain.add SidekiqNoRetryForDoomed }
end

ids = JSON.parse(ARGV.fetch(0)).map do |spec|
  klass = Object.const_get(spec.fetch("job"))
  args = spec.fetch("args", [])
  if klass < ActiveJob::Base
    options = {}
    options[:queue] = spec["queue"] if spec["queue"]
    options[:wait] = spec["wait"] if spec["wait"]
    job = klass.set(options).perform_later(*args)
    { "job_id" => job.job_id, "jid" => job.provider_job_id }
  else
    jid = Sidekiq::Client.push(
      "class" => klass, "args" => args, "queue" => spec.fetch("queue", "default"),
      "jid" => spec["jid"] || SecureRandom.hex(12)
    )
    { "job_id" => nil, "jid" => jid }
  end
end
$stdout.puts JSON.generate(ids)
