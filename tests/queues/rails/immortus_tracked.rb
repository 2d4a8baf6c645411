# Immortus::Tracked: an ActiveJob concern that writes each job's events where immortus's Python
# readers (DelayedJobStrategy, SidekiqStrategy) read them, so that they answer exactly, with
# progress. Needs the redis gem. Include it in a job (or in ApplicationJob); report progress
# from perform with immortus_progress(current, total, message).
require "json"
require "redis"

module Immortus
  module Tracked
    KEY = "immortus:rails:events:%s" # the reader's journal_prefix + "events:" + job_id
    TTL = 7 * 24 * 3600 # seconds the events are kept after the last one
    # Appends an event; a progress event replaces a progress event just before it.
    PUSH = <<~LUA
      local last = redis.call("LINDEX", KEYS[1], -1)
      if ARGV[2] == "progress" and last and string.find(last, '"kind":"progress"', 1, true) then
        redis.call("LSET", KEYS[1], -1, ARGV[1])
      else
        redis.call("RPUSH", KEYS[1], ARGV[1])
      end
      redis.call("EXPIRE", KEYS[1], ARGV[3])
    LUA

    def self.redis
      @redis ||= Redis.new(url: ENV["IMMORTUS_JOURNAL_URL"] || ENV["REDIS_URL"])
    end

    def self.included(job_class)
      job_class.after_enqueue { |job| job.immortus_event("enqueued") }
      job_class.around_perform do |job, block|
        job.immortus_event("started")
        block.call
        job.immortus_event("finished")
      rescue StandardError => e # the queue, or retry_on, decides whether it runs again
        job.immortus_event("retrying", error: { type: e.class.name, message: e.message })
        raise
      end
    end

    def immortus_progress(current, total = nil, message = nil)
      immortus_event("progress", progress: { current: current, total: total, message: message })
    end

    def immortus_event(kind, **details)
      event = { kind: kind, at: Time.now.to_f, job_class: self.class.name, **details }
      Tracked.redis.eval(PUSH, keys: [format(KEY, job_id)], argv: [event.to_json, kind, TTL])
    rescue StandardError => e # tracking never breaks the job
      logger&.warn("immortus: the #{kind} event of job #{job_id} was not written: #{e.message}")
    end
  end
end
