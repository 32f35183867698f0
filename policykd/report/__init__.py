"""What a run shows and leaves behind: TensorBoard, the progress bar and summary table, the summary,
curves.png, and the output folder (student.zip, rl-zoo layout)."""
