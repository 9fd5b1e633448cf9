from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('training', '0002_default_model_version'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='trainingmetric',
            name='one_metric_row_per_step',
        ),
        migrations.AddField(
            model_name='generationrun',
            name='purpose',
            field=models.CharField(choices=[('training', 'Training'), ('evaluation', 'Evaluation')], default='training', help_text='Evaluation rounds pair a version with its parent on held-out prompts; never trained on.', max_length=10),
        ),
        migrations.AddField(
            model_name='trainingmetric',
            name='split',
            field=models.CharField(choices=[('train', 'Training step'), ('eval', 'Held-out evaluation')], default='train', max_length=5),
        ),
        migrations.AddField(
            model_name='trainingrun',
            name='heldout_path',
            field=models.CharField(blank=True, max_length=1000),
        ),
        migrations.AddField(
            model_name='trainingrun',
            name='heldout_rows',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='trainingrun',
            name='learned',
            field=models.BooleanField(blank=True, help_text='Whether held-out accuracy (or, without held-out pairs, the margin) moved.', null=True),
        ),
        migrations.AddField(
            model_name='trainingrun',
            name='schedule',
            field=models.JSONField(blank=True, default=dict, help_text='The settings the run resolved against its data: steps, batch, lr, notes.'),
        ),
        migrations.AddField(
            model_name='trainingrun',
            name='verdict',
            field=models.TextField(blank=True, help_text='Why the run counts as having learned, or not.'),
        ),
        migrations.AddConstraint(
            model_name='trainingmetric',
            constraint=models.UniqueConstraint(fields=('run', 'split', 'step'), name='one_metric_row_per_split_step'),
        ),
    ]
