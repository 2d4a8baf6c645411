# Run Delayed::Job workers: each argument QUEUE:MAX_ATTEMPTS runs one job of QUEUE with
# Delayed::Worker.max_attempts = MAX_ATTEMPTS (ActiveJob's wrapper ignores a job's own
# max_attempts). Prints {"QUEUE": [successes, failures], ...} as JSON.
require_relative "delayed_job_app"

results = ARGV.to_h do |spec|
  queue, max_attempts = spec.split(":")
  Delayed::Worker.max_attempts = Integer(max_attempts)
  [queue, Delayed::Worker.new(queues: [queue], quiet: true).work_off(1)]
end
puts JSON.generate(results)
